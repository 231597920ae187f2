"""Which tensors of an ONNX graph get calibrated: activation inputs of MatMul/Gemm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import ModelError

QUANTIZED_OPS = ("MatMul", "Gemm")


def quantizable_tensors(onnx_path: str | Path) -> list[str]:
    """Activation inputs of MatMul/Gemm nodes (not weights or constants), in graph order.

    Example::

        names = quantizable_tensors("model.onnx")  # e.g. '/encoder/.../LayerNorm_output_0'
    """
    return quantizable_from_model(load_onnx(onnx_path, load_external_data=False))


def quantizable_from_model(model) -> list[str]:
    constant = _constant_tensors(model)
    int_types = _non_float_tensors(model)
    out: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        for name in node.input[:2]:
            if name and name not in constant and name not in int_types and name not in seen:
                seen.add(name)
                out.append(name)
    return out


def load_onnx(path: str | Path, load_external_data: bool = True):  # -> onnx.ModelProto
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX model {p} does not exist; export it first (workbench prepare)")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:  # onnx raises DecodeError/OSError variants for bad files
        raise ModelError(f"{p} is not a readable ONNX model ({exc})") from exc


def _constant_tensors(model) -> set[str]:
    """Initializers and everything computed only from them (weights, not activations)."""
    const = {i.name for i in model.graph.initializer}
    const.update(i.name for i in model.graph.sparse_initializer)
    graph_inputs = {i.name for i in model.graph.input} - const
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        ins = [i for i in node.input if i]
        derived = node.op_type == "Constant" or (ins and all(i in const for i in ins))
        if derived and not any(i in graph_inputs for i in ins):
            const.update(o for o in node.output if o)
    return const


def _non_float_tensors(model) -> set[str]:
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    out = set()
    for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.elem_type and t.elem_type not in floats:
            out.add(vi.name)
    return out


def prune_graph(graph: Any, skip: Callable[[Any], bool] | None = None) -> None:
    """Drop nodes and initializers no graph output depends on any more (and the nodes ``skip``
    names: folded into initializers by the caller), keeping the nodes' order."""
    needed = {o.name for o in graph.output}
    keep = []
    for n in reversed(list(graph.node)):
        if skip is not None and skip(n):
            continue
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
