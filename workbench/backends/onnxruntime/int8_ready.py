"""Graph rewrites that make a TorchScript export INT8-ready for ONNX Runtime's CPU kernels.

All are exact in float (the export is verified against PyTorch after them). They exist
because ORT's QDQ fusions reach a MatMul only in certain shapes: a weight behind an
Identity, a Gemm with a float bias, or a MatMul of weights alone stays float otherwise.
Measured on the ten BERT families of docs/models.md.

Example::

    model = onnx.load(path)
    bypass_weight_identities(model); gemm_to_matmul(model); fold_constant_matmuls(model)
    model = onnx.shape_inference.infer_shapes(model); bias_as_sub(model)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.calibration.graph import prune_graph


def bypass_weight_identities(model: Any) -> None:
    """Feed consumers of ``Identity(initializer)`` the initializer itself, in place.

    The exporter writes a weight shared by several calls (ALBERT's one layer run N times) once
    and reaches it through Identity nodes; the Q/DQ writer quantizes only MatMuls whose weight
    is an initializer, so those calls would stay float.
    """
    inits = {i.name for i in model.graph.initializer}
    alias = {
        n.output[0]: n.input[0]
        for n in model.graph.node
        if n.op_type == "Identity" and n.input[0] in inits
    }
    outputs = {o.name for o in model.graph.output}
    alias = {k: v for k, v in alias.items() if k not in outputs}
    if not alias:
        return
    keep = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        n.input[:] = [alias.get(i, i) for i in n.input]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def fold_constant_matmuls(model: Any) -> None:
    """Replace each weights-only subgraph that contains a MatMul by its value, in place.

    DeBERTa projects its relative-position embeddings (weights, not text) through query/key
    Linears: computed from weights alone, those MatMuls have no activation to calibrate and
    would stay float in every INT8 build. ORT evaluates the subgraph once, here.
    """
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = model.graph
    const = {i.name for i in graph.initializer}
    folded, has_matmul = set(), {}
    for n in graph.node:
        if n.op_type == "Constant":
            const.update(n.output)
        elif n.input and all(i in const for i in n.input if i):
            const.update(n.output)
            folded.add(n.name)
            mm = n.op_type in ("MatMul", "Gemm") or any(has_matmul.get(i) for i in n.input)
            has_matmul.update(dict.fromkeys(n.output, mm))
    live = [n for n in graph.node if n.name not in folded]
    frontier = sorted({i for n in live for i in n.input if has_matmul.get(i)})
    if not frontier:
        return
    probe = type(model).FromString(model.SerializeToString())
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in frontier)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), opts, ["CPUExecutionProvider"])
    feed = {i.name: np.ones((1, 8), dtype=np.int64) for i in sess.get_inputs()}
    values = sess.run(frontier, feed)  # the inputs do not reach these tensors
    pairs = zip(frontier, values, strict=True)
    graph.initializer.extend(numpy_helper.from_array(v, t) for t, v in pairs)
    prune_graph(graph, skip=lambda n: n.name in folded and all(o in frontier for o in n.output))


def gemm_to_matmul(model: Any) -> None:
    """Rewrite ``Gemm(A, W, b)`` with constant W (a Linear on a 2-D input) as
    ``MatMul(A, W') + b``, in place; names keep the module scope (``.../MatMul``)."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else ""
        if n.op_type != "Gemm" or n.input[1] not in inits or attrs.get("transA") or not plain:
            nodes.append(n)
            continue
        if bias and bias not in inits:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        w = np.ascontiguousarray(w.T if attrs.get("transB") else w)
        scope = n.name.rsplit("/", 1)[0]
        weight = f"{scope}/weight_matmul"
        model.graph.initializer.append(numpy_helper.from_array(w, weight))
        mm_out = f"{n.output[0]}_mm" if bias else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], weight], [mm_out], f"{scope}/MatMul"))
        if bias:
            nodes.append(helper.make_node("Add", [mm_out, bias], [n.output[0]], f"{scope}/Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def bias_as_sub(model: Any) -> None:
    """``MatMul(A, W) + b`` with constant W, b and an ``A`` that ORT can flatten to 2-D
    (rank 2, or static leading dims) becomes ``MatMul(A, W) - (-b)``.

    Exact in float. Why: ORT's MatMulAddFusion turns such a MatMul + Add into a Gemm, and a
    Q/DQ Gemm with a float bias is not fused into an INT8 kernel, so heads, poolers and
    DeBERTa's relative-position projections would stay float.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    flat = {
        v.name
        for v in [*model.graph.value_info, *model.graph.input]
        if v.type.tensor_type.HasField("shape")
        and (
            len(dims := v.type.tensor_type.shape.dim) == 2
            or all(d.HasField("dim_value") for d in dims[:-1])
        )
    }
    linear2d = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and n.input[0] in flat
    }
    for n in model.graph.node:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        act, bias = n.input if n.input[0] in linear2d else reversed(n.input)
        if act not in linear2d or bias not in inits:
            continue
        neg = numpy_helper.from_array(-numpy_helper.to_array(inits[bias]), f"{bias}_neg")
        model.graph.initializer.append(neg)
        n.op_type = "Sub"
        n.input[:] = [act, neg.name]
        n.name = n.name.rsplit("/", 1)[0] + "/Sub"
