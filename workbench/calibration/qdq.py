"""Explicit Q/DQ ONNX model from a CalibrationTable (what TensorRT 10/11 builds INT8 from).

Q/DQ pairs are inserted with ``onnx.helper`` rather than through ONNX Runtime's
``quantize_static``: that tool would recompute or reshape ranges (its calibration
result is an internal type, and overrides go through an ``extra_options`` dict),
while here every activation scale is exactly ``table.amax[t] / 127`` and the
placement is exactly what TensorRT wants: a Q/DQ pair on each activation input of
a MatMul/Gemm (shared by all its quantized consumers) and int8 weights behind a
DequantizeLinear. LayerNorm, GELU, Softmax and residual Adds are never touched, so
they stay float. Symmetric int8 only (zero point 0), as TensorRT requires.

Example::

    write_qdq_model("model.onnx", table, "model.qdq.onnx", per_channel=True,
                    exclude=[r"/head/", "Gemm"])
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.calibration.graph import QUANTIZED_OPS, load_onnx
from workbench.calibration.table import CalibrationTable
from workbench.errors import ConfigError, EngineBuildError
from workbench.fileio import atomic_write_with

log = logging.getLogger(__name__)

INT8_MAX = 127.0


def write_qdq_model(
    fp32_onnx: str | Path,
    table: CalibrationTable,
    out_path: str | Path,
    per_channel: bool = False,
    exclude: Sequence[str] = (),
) -> Path:
    """Write a Q/DQ copy of ``fp32_onnx`` using ``table``'s ranges; returns ``out_path``.

    ``exclude`` entries are op types (``"Gemm"``) or regular expressions searched in node
    names (``r"layer\\.11\\."``); matching nodes stay float.
    """
    import onnx

    model = load_onnx(fp32_onnx)
    table.check_model(fp32_onnx)
    is_excluded = _exclusion(exclude, {n.op_type for n in model.graph.node})
    if per_channel and _opset(model) < 13:
        raise ConfigError("per-channel weights need opset >= 13; re-export the model")
    b = _Builder(model, table, per_channel)
    nodes = []
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and not is_excluded(node):
            nodes.extend(b.quantize_inputs(node))
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    b.drop_unused_float_weights()
    if b.n_nodes == 0:
        raise ConfigError(
            "no MatMul/Gemm was quantized: the table has none of this model's tensors or "
            "everything is excluded; check --exclude and that the table fits the model"
        )
    log.info(
        "Q/DQ: %d MatMul/Gemm nodes, %d activations, %d weights (%s)",
        b.n_nodes,
        len(b.act_dq),
        len(b.weight_dq),
        "per-channel" if per_channel else "per-tensor",
    )

    def write(tmp: str) -> None:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise EngineBuildError(f"the Q/DQ model is invalid: {exc}") from exc
        onnx.save(model, tmp)

    return atomic_write_with(out_path, write)


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _exclusion(exclude: Sequence[str], op_types: set[str]):
    ops = {e for e in exclude if e in op_types or e in QUANTIZED_OPS}
    patterns = []
    for e in exclude:
        if e in ops:
            continue
        try:
            patterns.append(re.compile(e))
        except re.error as exc:
            raise ConfigError(
                f"--exclude {e!r} is neither an op type nor a valid regex ({exc})"
            ) from exc

    def is_excluded(node) -> bool:
        return node.op_type in ops or any(p.search(node.name) for p in patterns)

    return is_excluded


class _Builder:
    """Creates Q/DQ nodes and int8 initializers, sharing them between consumers."""

    def __init__(self, model, table: CalibrationTable, per_channel: bool) -> None:
        self.graph = model.graph
        self.table = table
        self.per_channel = per_channel
        self.inits = {i.name: i for i in model.graph.initializer}
        self.act_dq: dict[str, str] = {}
        self.weight_dq: dict[tuple[str, int | None], str] = {}
        self.replaced: Counter[str] = Counter()
        self.n_nodes = 0
        self._skipped_zero: set[str] = set()

    def quantize_inputs(self, node) -> list:
        """New Q/DQ nodes for ``node``'s two matrix inputs; rewires ``node`` to use them."""
        new: list = []
        changed = False
        for idx in (0, 1):
            if idx >= len(node.input) or not node.input[idx]:
                continue
            name = node.input[idx]
            if name in self.inits:
                dq = self._weight(name, self._channel_axis(node, idx), new)
            elif name in self.table.amax:
                dq = self._activation(name, new)
            else:
                dq = None
            if dq is not None:
                node.input[idx] = dq
                self.replaced[name] += 1
                changed = True
        self.n_nodes += int(changed)
        return new

    def _channel_axis(self, node, idx: int) -> int | None:
        """Output-channel axis of a weight input (None: per-tensor)."""
        if not self.per_channel or idx != 1:
            return None
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            return 0 if trans_b else 1
        dims = self.inits[node.input[idx]].dims
        return len(dims) - 1 if len(dims) >= 2 else None

    def _activation(self, name: str, new: list) -> str | None:
        from onnx import TensorProto, helper

        if name in self.act_dq:
            return self.act_dq[name]
        amax = float(self.table.amax[name])
        if amax <= 0:
            if name not in self._skipped_zero:
                log.warning("tensor %s has amax 0 (always zero); left float", name)
                self._skipped_zero.add(name)
            return None
        base = _safe(name)
        scale, zp = f"{base}_scale", f"{base}_zero_point"
        self.graph.initializer.extend(
            [
                helper.make_tensor(
                    scale, TensorProto.FLOAT, [], [float(np.float32(amax / INT8_MAX))]
                ),
                helper.make_tensor(zp, TensorProto.INT8, [], [0]),
            ]
        )
        q_out, dq_out = f"{base}_quantized", f"{base}_dequantized"
        new.append(helper.make_node("QuantizeLinear", [name, scale, zp], [q_out], f"{base}_Q"))
        new.append(helper.make_node("DequantizeLinear", [q_out, scale, zp], [dq_out], f"{base}_DQ"))
        self.act_dq[name] = dq_out
        return dq_out

    def _weight(self, name: str, axis: int | None, new: list) -> str | None:
        from onnx import helper, numpy_helper

        key = (name, axis)
        if key in self.weight_dq:
            return self.weight_dq[key]
        w = numpy_helper.to_array(self.inits[name])
        if w.dtype.kind != "f" or w.ndim == 0:
            return None
        w = w.astype(np.float32)
        if axis is None:
            scale = np.array(max(float(np.abs(w).max()), 0.0) / INT8_MAX, dtype=np.float32)
            if scale == 0:
                scale = np.array(1.0, dtype=np.float32)
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            zp = np.array(0, dtype=np.int8)
        else:
            other = tuple(a for a in range(w.ndim) if a != axis)
            scale = (np.abs(w).max(axis=other) / INT8_MAX).astype(np.float32)
            scale[scale == 0] = 1.0
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
            zp = np.zeros(scale.shape, dtype=np.int8)
        base = _safe(name) + ("" if axis is None else f"_axis{axis}")
        self.graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{base}_quantized"),
                numpy_helper.from_array(scale, f"{base}_scale"),
                numpy_helper.from_array(zp, f"{base}_zero_point"),
            ]
        )
        dq_out = f"{base}_dequantized"
        inputs = [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"]
        dq = helper.make_node("DequantizeLinear", inputs, [dq_out], f"{base}_DQ")
        if axis is not None:
            dq.attribute.append(helper.make_attribute("axis", axis))
        new.append(dq)
        self.weight_dq[key] = dq_out
        return dq_out

    def drop_unused_float_weights(self) -> None:
        """Remove float weights that no node reads any more (all uses went int8)."""
        used = Counter(i for n in self.graph.node for i in n.input)
        used.update(o.name for o in self.graph.output)
        keep = [
            i
            for i in self.graph.initializer
            if not (i.name in self.replaced and i.name in self.inits and used[i.name] == 0)
        ]
        if len(keep) != len(self.graph.initializer):
            del self.graph.initializer[:]
            self.graph.initializer.extend(keep)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./:-]", "_", name)


def excluded_nodes(fp32_onnx: str | Path, exclude: Sequence[str]) -> list[str]:
    """Names of the MatMul/Gemm nodes ``exclude`` keeps in float (the rule the Q/DQ writer
    applies), so other backends keep exactly the same layers in float."""
    model = load_onnx(fp32_onnx, load_external_data=False)
    is_excluded = _exclusion(exclude, {n.op_type for n in model.graph.node})
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and is_excluded(n)]
