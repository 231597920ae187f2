"""Cheap per-layer proxies of INT8 harm: SQNR and MSE of each MatMul/Gemm output with
fake-quantized inputs, from one FP32 pass (activations through the one scorer, weights as the
Q/DQ writer quantizes them). ``sensitivity.py`` correlates them with the task metric.

Example::

    proxies = layer_proxies("model.onnx", table, feeds, node_groups("model.onnx"), spec)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.calibration.graph import load_onnx
from workbench.calibration.methods import fake_quant, sqnr_db
from workbench.calibration.table import CalibrationTable
from workbench.evaluate.scorer import score_feeds

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.evaluate.sensitivity import NodeGroup, SensitivitySpec

Feed = dict[str, np.ndarray]


def layer_proxies(
    fp32_onnx: str | Path,
    table: CalibrationTable,
    feeds: Sequence[Feed],
    groups: Sequence[NodeGroup],
    spec: SensitivitySpec,
) -> dict[str, tuple[float, float]]:
    """Per node: (SQNR dB, MSE) of its output with fake-quantized vs FP32 inputs (NumPy), from
    the first ``spec.proxy_samples`` samples of ``feeds`` through the one scorer."""
    model = load_onnx(fp32_onnx)
    inits = {i.name: i for i in model.graph.initializer}
    wanted = {g.onnx_node for g in groups}
    nodes = [n for n in model.graph.node if n.name in wanted]
    acts = sorted({t for n in nodes for t in n.input[:2] if t and t not in inits})
    weights = _fake_weights(nodes, inits, spec.per_channel)
    signal = dict.fromkeys(wanted, 0.0)
    noise = dict.fromkeys(wanted, 0.0)
    count = dict.fromkeys(wanted, 0)
    with tapped_runner(fp32_onnx, acts, spec.threads) as tap:
        for values in score_feeds(tap, _first_samples(feeds, spec.proxy_samples), acts):
            for n in nodes:
                y, yq = _layer_out(n, values, weights, table)
                signal[n.name] += float(np.sum(y.astype(np.float64) ** 2))
                noise[n.name] += float(np.sum((y.astype(np.float64) - yq) ** 2))
                count[n.name] += int(y.size)
    return {
        n: (sqnr_db(signal[n], noise[n]), noise[n] / count[n] if count[n] else float("nan"))
        for n in wanted
    }


def _fake_weights(nodes, inits, per_channel: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(float, fake-quantized) weights as the Q/DQ writer would quantize them."""
    from onnx import numpy_helper

    out = {}
    for n in nodes:
        for idx, name in enumerate(n.input[:2]):
            if name not in inits:
                continue
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            axis = None
            if per_channel and idx == 1 and w.ndim >= 2:
                trans_b = any(a.name == "transB" and a.i for a in n.attribute)
                axis = (0 if trans_b else 1) if n.op_type == "Gemm" else w.ndim - 1
            out[name] = (w, _fake_quant_weight(w, axis))
    return out


def _fake_quant_weight(w: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return fake_quant(w, float(np.abs(w).max()))
    other = tuple(a for a in range(w.ndim) if a != axis)
    scale = np.abs(w).max(axis=other, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def _layer_out(node, values, weights, table) -> tuple[np.ndarray, np.ndarray]:
    """The node's FP32 output and its output with both inputs fake-quantized."""
    ins, qins = [], []
    for name in node.input[:2]:
        if name in weights:
            ins.append(weights[name][0])
            qins.append(weights[name][1])
        else:
            x = values[name]
            amax = float(table.amax.get(name, 0.0))
            ins.append(x)
            qins.append(fake_quant(x, amax) if amax > 0 else x)
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        ta, tb = attrs.get("transA"), attrs.get("transB")
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0

        def gemm(a, b):
            a = a.T if ta is not None and ta.i else a
            b = b.T if tb is not None and tb.i else b
            return alpha * (a @ b)

        return gemm(*ins), gemm(*qins)
    return np.matmul(*ins), np.matmul(*qins)


def _first_samples(feeds: Sequence[Feed], limit: int) -> Iterator[Feed]:
    """The feeds cut to their first ``limit`` samples in all (lazily)."""
    seen = 0
    for feed in feeds:
        if seen >= limit:
            break
        take = min(int(next(iter(feed.values())).shape[0]), limit - seen)
        seen += take
        yield {k: v[:take] for k, v in feed.items()}


def tapped_runner(fp32_onnx: str | Path, names: list[str], threads: int = 0) -> OrtRunner:
    """An FP32 CPU runner on ``fp32_onnx`` with the intermediate tensors ``names`` as outputs
    (calibration's graph tap, opened as an ONNX Runtime runner)."""
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.tap import open_tapped

    return open_tapped(load_onnx(fp32_onnx), names, open_ort_runner, threads)
