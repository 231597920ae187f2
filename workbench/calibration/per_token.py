"""Dynamic INT8 activations for chosen MatMuls inside an otherwise static Q/DQ model.

Static Q/DQ cannot express per-token scales: ``QuantizeLinear`` takes a constant per-tensor
or per-axis scale, not one computed per row at run time. So each chosen MatMul (its weight
a constant, e.g. the worst layers of a sensitivity scan) is rewritten the way ONNX
Runtime's own dynamic quantization does it, reading the float activation its static Q/DQ
pair used to read:

* ``per-tensor``: ``DynamicQuantizeLinear`` (uint8, scale and zero point from this
  input's min/max) → ``MatMulInteger`` with the int8 weight → ``Cast`` → ``Mul`` by
  ``x_scale · w_scale``, the pattern ORT fuses into ``DynamicQuantizeMatMul``.
* ``per-token``: one symmetric int8 scale per row (token), run in ORT's fused integer
  kernels: ``x · (1/amax_row)`` quantized with the constant scale 1/127 (uint8, zero point
  128) → ``MatMulIntegerToFloat`` → ``Mul`` by ``amax_row``. ``amax_row`` is the row's
  largest magnitude from ``ReduceMax`` and ``ReduceMin``; for the output of a fused GELU
  (never below −0.1700) it is ``max(ReduceMax(x), 0.171)``: one pass over the input and
  two small ops fewer, and the range still covers every value.

Weights keep the Q/DQ writer's int8 values and scales (per-channel or per-tensor); a
MatMul left float gets symmetric per-column int8 weights here. Static Q/DQ pairs that no
node reads any more are removed.

Example::

    dynamic_matmuls(Path("m.qdq.onnx"), ["/encoder/layer.5/output/dense/MatMul"],
                    Path("m.mixed.onnx"), granularity="per-token")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.calibration.graph import load_onnx
from workbench.errors import ConfigError
from workbench.fileio import atomic_write_with

log = logging.getLogger(__name__)

GRANULARITIES = ("per-tensor", "per-token")
# fused GELU kernels (ORT contrib and ONNX opset 20): their output is never below -0.17004
# (tanh form; -0.16997 exact), so a row's largest magnitude is max(row max, 0.171)
GELU_OPS = frozenset({"Gelu", "BiasGelu", "FastGelu"})
GELU_FLOOR = np.float32(0.171)


def dynamic_matmuls(
    qdq_model: Path,
    node_names: Sequence[str],
    out_path: Path,
    *,
    granularity: str = "per-token",
) -> Path:
    """Write a copy of ``qdq_model`` whose ``node_names`` MatMuls quantize their activation
    input dynamically (``granularity``: ``per-tensor`` or ``per-token``); returns ``out_path``.

    Example::

        dynamic_matmuls(qdq, worst_nodes, out / "mixed.onnx")
    """
    import onnx

    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity {granularity!r} is unknown; use one of {GRANULARITIES}")
    model = load_onnx(qdq_model)
    by_name = {n.name: n for n in model.graph.node}
    unknown = [n for n in node_names if n not in by_name]
    if unknown or not node_names:
        raise ConfigError(
            f"{qdq_model} has no node(s) {unknown[:3]}; pass MatMul node names of this model"
            if unknown
            else "no MatMul node names given to make dynamic"
        )
    rw = _Rewriter(model, granularity)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    chosen = set(node_names)
    nodes = []
    for node in model.graph.node:
        nodes.extend(rw.rewrite(node) if node.name in chosen else [node])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _prune(model)
    log.info("%d MatMul(s) made dynamic %s", len(chosen), granularity)

    def write(path: str) -> None:
        onnx.checker.check_model(model)
        onnx.save(model, path)

    return atomic_write_with(out_path, write)


class _Rewriter:
    """Builds the dynamic-quantization subgraph of one MatMul."""

    def __init__(self, model, granularity: str) -> None:
        self.graph = model.graph
        self.granularity = granularity
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producers = {o: n for n in model.graph.node for o in n.output}
        self.opset = max(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0
        )

    def rewrite(self, node) -> list:
        from onnx import TensorProto, helper

        if node.op_type != "MatMul":
            raise ConfigError(f"{node.name} is a {node.op_type}; only MatMul nodes can go dynamic")
        x = self._float_input(node.input[0])
        w_q, w_scale = self._int8_weight(node)
        base = node.name
        new = []
        mm_out = f"{base}_int32"
        if self.granularity == "per-tensor":
            xq, xs, xzp = (f"{base}_x_{k}" for k in ("quantized", "scale", "zero_point"))
            new.append(helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xzp], f"{base}_dq"))
            new.append(helper.make_node("MatMulInteger", [xq, w_q, xzp], [mm_out], base))
            scale = f"{base}_scales"
            new.append(helper.make_node("Mul", [xs, w_scale], [scale], f"{base}_scales"))
        else:
            return self._per_token_matmul(node, x, w_q, w_scale, new)
        cast = f"{base}_float"
        new.append(helper.make_node("Cast", [mm_out], [cast], f"{base}_cast", to=TensorProto.FLOAT))
        new.append(helper.make_node("Mul", [cast, scale], [node.output[0]], f"{base}_rescale"))
        return new

    def _per_token_matmul(self, node, x: str, w_q: str, w_scale: str, new: list) -> list:
        """Per row r: ``x_r · (1 / amax_r)`` is quantized with the constant scale 1/127
        (uint8, zero point 128), multiplied in ORT's integer kernel with per-column float
        output (``MatMulIntegerToFloat``), then scaled back by ``amax_r``: the same symmetric
        per-token int8 as ``round(x_r · 127 / amax_r)``, in fused kernels. ``amax_r`` comes
        from ReduceMax and ReduceMin (no ``|x|`` tensor written; after a fused GELU, from
        ReduceMax and ``GELU_FLOOR`` alone); a per-axis QuantizeLinear
        with the row scales instead of the multiply measured slower (205 vs 167 µs for a
        128 × 1536 → 384 MatMul on 2 threads)."""
        from onnx import helper

        base, n = node.name, f"{node.name}_tok"
        self._const(f"{base}_unit_scale", np.float32(1.0 / 127.0))
        self._const(f"{base}_unit_zero_point", np.uint8(128))
        producer = self.producers.get(x)
        if producer is not None and producer.op_type in GELU_OPS:
            # GELU output: only the row max is needed, floored at |GELU's minimum|
            self._const(f"{base}_gelu_floor", GELU_FLOOR)
            new.append(self._reduce("ReduceMax", x, f"{n}_max", base))
            amax_in = [f"{n}_max", f"{base}_gelu_floor"]
        else:
            # abs-max per row from two reductions (no |x| tensor written)
            self._const(f"{base}_eps", np.float32(1e-12))
            new.append(self._reduce("ReduceMax", x, f"{n}_max", base))
            new.append(self._reduce("ReduceMin", x, f"{n}_min", base))
            new.append(helper.make_node("Neg", [f"{n}_min"], [f"{n}_neg_min"], f"{n}_neg_min"))
            amax_in = [f"{n}_max", f"{n}_neg_min", f"{base}_eps"]
        new.append(helper.make_node("Max", amax_in, [f"{n}_amax_pos"], f"{n}_amax"))
        # x times its reciprocal: one division per row, not per element
        new.append(helper.make_node("Reciprocal", [f"{n}_amax_pos"], [f"{n}_inv"], f"{n}_inv"))
        new.append(helper.make_node("Mul", [x, f"{n}_inv"], [f"{n}_unit"], f"{n}_unit"))
        unit_q = [f"{n}_unit", f"{base}_unit_scale", f"{base}_unit_zero_point"]
        new.append(helper.make_node("QuantizeLinear", unit_q, [f"{n}_uint8"], f"{n}_quantize"))
        mm_in = [f"{n}_uint8", w_q, f"{base}_unit_scale", w_scale, f"{base}_unit_zero_point"]
        new.append(
            helper.make_node(
                "MatMulIntegerToFloat", mm_in, [f"{n}_unit_out"], base, domain="com.microsoft"
            )
        )
        out = [node.output[0]]
        new.append(helper.make_node("Mul", [f"{n}_unit_out", f"{n}_amax_pos"], out, f"{n}_rescale"))
        return new

    def _reduce(self, op: str, x: str, out: str, base: str):
        """``op`` over the last axis of ``x``, keeping it (axes as an input from opset 18)."""
        from onnx import helper

        if self.opset >= 18:
            self._const(f"{base}_last_axis", np.array([-1], dtype=np.int64))
            return helper.make_node(op, [x, f"{base}_last_axis"], [out], out)
        return helper.make_node(op, [x], [out], out, axes=[-1])

    def _float_input(self, name: str) -> str:
        """The float tensor behind a static activation Q/DQ pair (or ``name`` itself)."""
        dq = self.producers.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = self.producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                return q.input[0]
        if name in self.inits:
            raise ConfigError(f"MatMul input {name!r} is a constant; expected an activation")
        return name

    def _int8_weight(self, node) -> tuple[str, str]:
        """(int8 weight initializer, float scale: scalar or per output column)."""
        from onnx import numpy_helper

        name = node.input[1]
        dq = self.producers.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in self.inits:
            q = numpy_helper.to_array(self.inits[dq.input[0]])
            zp = numpy_helper.to_array(self.inits[dq.input[2]]) if len(dq.input) > 2 else 0
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            per_tensor = numpy_helper.to_array(self.inits[dq.input[1]]).ndim == 0
            per_column = axis in (1, -1)
            if q.dtype == np.int8 and q.ndim == 2 and not np.any(zp) and (per_tensor or per_column):
                return dq.input[0], dq.input[1]
        if name not in self.inits:
            raise ConfigError(
                f"{node.name}: its weight is neither a constant nor an int8 DequantizeLinear; "
                "only MatMuls with constant weights can go dynamic"
            )
        w = numpy_helper.to_array(self.inits[name]).astype(np.float32)
        if w.ndim != 2:
            raise ConfigError(f"{node.name}: weight has shape {w.shape}; expected 2-D")
        scale = (np.abs(w).max(axis=0) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        self._const(f"{node.name}_w_int8", q)
        self._const(f"{node.name}_w_scale", scale)
        return f"{node.name}_w_int8", f"{node.name}_w_scale"

    def _const(self, name: str, value: np.ndarray | np.generic) -> None:
        from onnx import numpy_helper

        if name not in self.inits:
            t = numpy_helper.from_array(np.asarray(value), name)
            self.graph.initializer.append(t)
            self.inits[name] = t


def _prune(model) -> None:
    """Remove Q/DQ nodes no one reads any more, then unused initializers."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(o in used for o in n.output)
        ]
        if not dead:
            break
        keep = [n for n in model.graph.node if all(n is not d for d in dead)]
        del model.graph.node[:]
        model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input} | outputs
    inits = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
