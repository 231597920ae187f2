"""Pack each fused attention's Q/K/V projections into ONNX Runtime's ``Attention`` op, so that
dynamic INT8 runs them as one ``QAttention`` instead of three ``DynamicQuantizeMatMul``s.

``fusion.fuse_bert`` leaves Q, K and V as three plain MatMul + bias Add feeding
``MultiHeadAttention`` (so the static Q/DQ writer can quantize each). For dynamic INT8 that
costs three GEMM calls per layer on the same input; ORT's ``com.microsoft.Attention`` takes
the three weights concatenated ([hidden, 3·hidden], bias [3·hidden]) and its quantizer
(``quantize_dynamic`` with ``Attention`` in ``op_types_to_quantize``) turns it into
``QAttention``: one INT8 GEMM with per-column weight scales, the same shared per-tensor input
scale the three MatMuls had, then ORT's float attention core. Same arithmetic (identical
predictions on the default classifier's 2,551 test rows); measured at batch 1 × seq 128 on 2
threads, 6.08 → 5.17 ms (``docs/search.md``). ORT's CPU MultiHeadAttention has no packed-QKV
input (``(B, L, N, 3, H)`` is "not implemented for CPU"), hence ``Attention``.

A layer whose Q, K or V MatMul is to stay float (``keep_float``) is left as it is, so layers
kept in float and per-token rewrites still find their MatMuls by name.

Example::

    model = load_onnx("fused.onnx"); packed = pack_attention(model, keep_float=())
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

PACKED_OP = "Attention"


def pack_attention(model: Any, keep_float: Collection[str] = ()) -> int:
    """Replace (in place) each ``MultiHeadAttention`` fed by three constant-weight MatMul +
    bias Add projections of one tensor by ``Attention``; returns how many were packed."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    replace: dict[str, Any] = {}
    dropped: set[str] = set()
    for node in graph.node:
        if node.op_type != "MultiHeadAttention" or len(node.input) < 5 or any(node.input[3:4]):
            continue
        proj = [_projection(t, producer, inits, readers) for t in node.input[:3]]
        if any(p is None for p in proj) or len({p[0] for p in proj}) != 1:
            continue
        if any(p[1].name in keep_float for p in proj):
            continue
        prefix = node.name.rsplit("/", 1)[0]
        weight = np.concatenate([numpy_helper.to_array(inits[p[1].input[1]]) for p in proj], 1)
        bias = np.concatenate([numpy_helper.to_array(inits[p[3]]).reshape(-1) for p in proj])
        w_name, b_name = f"{prefix}/qkv.weight", f"{prefix}/qkv.bias"
        graph.initializer.extend(
            [numpy_helper.from_array(weight, w_name), numpy_helper.from_array(bias, b_name)]
        )
        heads = next(a.i for a in node.attribute if a.name == "num_heads")
        replace[node.name] = helper.make_node(
            PACKED_OP,
            [proj[0][0], w_name, b_name, node.input[4]],
            list(node.output),
            name=f"{prefix}/{PACKED_OP}",
            domain="com.microsoft",
            num_heads=heads,
        )
        dropped.update(n.name for p in proj for n in (p[1], p[2]))
    if not replace:
        return 0
    nodes = [replace.get(n.name, n) for n in graph.node if n.name not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return len(replace)


def _projection(tensor: str, producer, inits, readers):
    """``(input, MatMul, Add, bias)`` when ``tensor`` is ``MatMul(input, W) + b`` with constant
    2-D W and 1-D b, each output read once; else None."""
    add = producer.get(tensor)
    if add is None or add.op_type != "Add" or readers.get(tensor, 0) != 1:
        return None
    a, b = add.input
    mm_out, bias = (a, b) if b in inits else (b, a)
    mm = producer.get(mm_out)
    if mm is None or mm.op_type != "MatMul" or bias not in inits or readers.get(mm_out, 0) != 1:
        return None
    if mm.input[1] not in inits or len(inits[mm.input[1]].dims) != 2:
        return None
    if len(inits[bias].dims) != 1:
        return None
    return mm.input[0], mm, add, bias
