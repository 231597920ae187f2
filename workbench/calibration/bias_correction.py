"""Empirical bias correction of a Q/DQ model (Nagel et al. 2019, "Data-Free Quantization").

INT8 rounding of weights and activations shifts the *mean* of a layer's output; that shift
passes through every later layer. Each quantized MatMul (+ bias Add) or Gemm (bias input)
gets ``bias -= E[y_q] − E[y_fp]``, the per-output-channel mean error over the calibration
feeds at real (non-padded) tokens; ``E[y_q − y_fp] = E[y_q] − E[y_fp]``, so the FP32 means
come from one pass and only channel means are kept, never activations.

Layer by layer (``sequential=True``, the default): layers are corrected in rounds by depth
(a round holds the layers with no corrected layer between them, e.g. Q/K/V of one block),
and each round measures the model with all earlier corrections in place, so a later layer
corrects only what is left (Nagel's order). That is one ONNX Runtime pass over the feeds per
round (4 per BERT block + head). ``sequential=False`` corrects every layer from one pass
(cheaper; later layers then also absorb upstream shifts that upstream corrections remove,
so it can over-correct). Every corrected bias gets its own initializer (exports share
identical ones).

Example::

    bias_correct(Path("m.qdq.onnx"), Path("m.onnx"), feeds, Path("m.qdq.bc.onnx"),
                 open_runner=open_ort_runner)
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.calibration.graph import QUANTIZED_OPS, load_onnx
from workbench.calibration.tap import ActivationTap, OpenRunner
from workbench.errors import CalibrationError, ConfigError
from workbench.fileio import atomic_write_with

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class _Target:
    """One quantized layer: the tensor to measure and the node/input holding its bias."""

    output: str  # bias Add output (MatMul) or Gemm output
    bias_node: str  # node name (or output) of the node reading the bias
    bias_index: int
    depth: int


def bias_correct(
    qdq_model: Path,
    fp32_model: Path,
    feeds: Iterable[Feed],
    out_path: Path,
    *,
    open_runner: OpenRunner,
    sequential: bool = True,
) -> Path:
    """Write a copy of ``qdq_model`` whose quantized layers' biases absorb their mean output
    error against ``fp32_model`` on ``feeds``; returns ``out_path``. ``open_runner`` opens the
    runners that measure them (``backends.onnxruntime.runner.open_ort_runner``).

    Example::

        bias_correct(qdq, fp32, calib_feeds, out / "model.bc.onnx", open_runner=open_ort_runner)
    """
    import onnx

    feeds = list(feeds)
    if not feeds:
        raise CalibrationError("bias correction needs calibration feeds; none were given")
    model = load_onnx(qdq_model)
    targets = _targets(model)
    if not targets:
        raise ConfigError(
            f"{qdq_model} has no quantized MatMul/Gemm with a constant bias; pass a Q/DQ model "
            "written by write_qdq_model"
        )
    fp_means = _channel_means(fp32_model, [t.output for t in targets], feeds, open_runner)
    missing = [t.output for t in targets if t.output not in fp_means]
    if missing:
        raise ConfigError(
            f"{fp32_model} has no tensor {missing[0]!r}; pass the model {qdq_model} came from"
        )
    depths = sorted({t.depth for t in targets}) if sequential else [None]
    by_name = {n.name or n.output[0]: n for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    with tempfile.TemporaryDirectory(prefix="wb-biascorr-") as tmp:
        for depth in depths:
            batch = [t for t in targets if depth is None or t.depth == depth]
            current = Path(tmp) / "current.onnx"
            onnx.save(model, str(current))
            q_means = _channel_means(current, [t.output for t in batch], feeds, open_runner)
            for t in batch:
                shift = q_means[t.output] - fp_means[t.output]
                _shift_bias(model, by_name[t.bias_node], t, shift, inits)
    _drop_unused(model)
    log.info("bias correction: %d layers in %d round(s)", len(targets), len(depths))

    def write(path: str) -> None:
        onnx.checker.check_model(model)
        onnx.save(model, path)

    return atomic_write_with(out_path, write)


def refusal(fp32_model: Path | str) -> str | None:
    """Why bias correction cannot apply to ``fp32_model`` (None when it can): it needs at least
    one MatMul/Gemm with a constant weight whose output takes a constant bias (ModernBERT's
    linear layers, for one, have no biases)."""
    from workbench.calibration.graph import load_onnx

    g = load_onnx(fp32_model, load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    adds = {o: n for n in g.node if n.op_type == "Add" for o in n.input}
    for n in g.node:
        if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2] in inits:
            return None
        add = adds.get(n.output[0]) if n.op_type == "MatMul" else None
        if add is not None and any(i in inits for i in add.input if i != n.output[0]):
            return None
    return "the model has no MatMul/Gemm with a constant bias to correct"


def _shift_bias(model, node, t: _Target, shift: np.ndarray, inits: dict) -> None:
    """``bias − shift`` into the target's own initializer (created on first use)."""
    from onnx import numpy_helper

    bias = numpy_helper.to_array(inits[node.input[t.bias_index]]).astype(np.float64)
    name = f"{t.output}_bias_corrected"
    new = numpy_helper.from_array((bias - shift.reshape(bias.shape)).astype(np.float32), name)
    if name in inits:
        inits[name].CopyFrom(new)
    else:
        model.graph.initializer.append(new)
        inits[name] = model.graph.initializer[-1]
    node.input[t.bias_index] = name


def _targets(model) -> list[_Target]:
    """Quantized MatMul/Gemm layers with a constant 1-D bias, with their correction depth."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def quantized(node) -> bool:
        return any(
            i in producers and producers[i].op_type == "DequantizeLinear" for i in node.input[:2]
        )

    def bias_of(node) -> tuple[Any, int, str] | None:
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] in inits:
            return node, 2, node.output[0]
        users = consumers.get(node.output[0], [])
        if node.op_type != "MatMul" or len(users) != 1 or users[0].op_type != "Add":
            return None
        add = users[0]
        idx = 0 if add.input[1] == node.output[0] else 1
        if add.input[idx] not in inits:
            return None
        return add, idx, add.output[0]

    out: list[_Target] = []
    depth_of: dict[str, int] = {}
    corrected: dict[str, int] = {}  # a target's output -> its depth (its Add may come later)
    for node in model.graph.node:  # topological: depth = 1 + deepest corrected layer upstream
        d = max((depth_of.get(i, 0) for i in node.input), default=0)
        for o in node.output:
            depth_of[o] = corrected.get(o, d)
        if node.op_type not in QUANTIZED_OPS or not quantized(node):
            continue
        found = bias_of(node)
        if found is None:
            continue
        holder, idx, output = found
        bias = numpy_helper.to_array(inits[holder.input[idx]])
        if bias.dtype.kind != "f" or bias.size != max(bias.shape, default=0):
            continue  # not a per-channel vector
        corrected[output] = depth_of[output] = d + 1
        out.append(_Target(output, holder.name or holder.output[0], idx, d + 1))
    return out


def _channel_means(
    model: Path, names: list[str], feeds: list[Feed], open_runner: OpenRunner
) -> dict[str, np.ndarray]:
    """Per-channel (last axis) means of ``names`` at real tokens over ``feeds``."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    with ActivationTap(model, names, open_runner=open_runner) as tap:
        for feed in feeds:
            for chunk in tap.chunks(feed):
                for name, rows in tap.token_rows(chunk):
                    s = rows.astype(np.float64).sum(axis=0)
                    sums[name] = sums[name] + s if name in sums else s
                    counts[name] = counts.get(name, 0) + rows.shape[0]
    return {n: sums[n] / max(counts[n], 1) for n in sums}


def _drop_unused(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
