"""Fuse a BERT ONNX export for ONNX Runtime's CPU kernels *before* INT8 Q/DQ insertion.

ONNX Runtime's transformer optimizer (``optimize_model(model_type="bert")``) fuses
BiasGelu (and SkipLayerNormalization, left out here: see below) on the TorchScript
export, but not its attention:
recent transformers export SDPA with a boolean mask, Where and IsNaN nodes that the
optimizer's patterns do not match. This module first replaces each attention core
(Q·Kᵀ, mask, softmax, ·V, head reshapes) with one ``com.microsoft.MultiHeadAttention``
node fed by the Q/K/V projections, which stay plain MatMuls, so the workbench's Q/DQ
writer still quantizes every projection (including Q/K/V) while the attention core
runs in ORT's fused float kernel. Output: an FP32 ONNX model to calibrate and quantize.

Residual + LayerNorm stay ``Add`` + ``LayerNormalization``: ONNX Runtime 1.32's CPU
``SkipLayerNormalization`` kernel is 6-10x slower than the two ops it replaces (128 x 384
floats: 129 us vs ~25 us on 2 threads; the static INT8 fused build of the default classifier
spends 21 % of batch 1 and 26 % of batch 8 in it), so the fused graph does not ask for it and
``runner.OrtRunner`` turns ORT's own runtime fusion of it off on the CPU
(``CPU_DISABLED_OPTIMIZERS``).

``unshare_dequantize`` then gives every MatMul its own DequantizeLinear: ORT's CPU
QDQ fusion turns DQ→MatMul into MatMulIntegerToFloat only for an unshared DQ, so the
shared activation DQ of Q/K/V otherwise leaves those three MatMuls in float.

Example::

    info = fuse_bert("model.onnx", "model.fused.onnx", num_heads=12)
    table = calibrate(info.path, batches, "max")
    write_qdq_model(info.path, table, "q.onnx", per_channel=False)
    unshare_dequantize("q.onnx", "q.ort.onnx")
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from workbench.calibration.graph import load_onnx, prune_graph
from workbench.errors import ConfigError, EngineBuildError
from workbench.fileio import atomic_write_with, cache_root, sha256_file, sha256_json

log = logging.getLogger(__name__)

FUSION_VERSION = 2  # 2: no SkipLayerNormalization (slow on ORT's CPU)
MASK_INPUT = "attention_mask"
_PASS_THROUGH = ("Reshape", "Transpose", "Mul", "Div")  # head split/merge and q/k scaling
FUSED_OPS = ("MultiHeadAttention", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu")


@dataclass(frozen=True)
class FusionInfo:
    """The fused model and what was fused in it."""

    path: Path
    attention_fused: int  # attention cores replaced by MultiHeadAttention
    fused_ops: dict[str, int]  # op type -> count of fused ops in the result
    num_heads: int


def fuse_bert(
    fp32_onnx: str | Path, out: str | Path | None = None, num_heads: int = 12, cache: bool = True
) -> FusionInfo:
    """Write an attention + BiasGelu fused copy of ``fp32_onnx`` (residual + LayerNorm unfused).

    ``out`` defaults to a content-addressed file under the workbench cache.
    """
    import onnxruntime

    if num_heads < 1:
        raise ConfigError(f"num_heads must be >= 1, got {num_heads}; see the model's config.json")
    key = sha256_json(
        {
            "onnx": sha256_file(fp32_onnx),
            "heads": num_heads,
            "ort": onnxruntime.__version__,
            "v": FUSION_VERSION,
        }
    )[:16]
    target = Path(out) if out is not None else cache_root() / "fused" / key / "model.onnx"
    meta = target.with_suffix(".fusion.json")
    if cache and target.is_file() and meta.is_file():
        import json

        data = json.loads(meta.read_text())
        if data.get("key") == key:
            return FusionInfo(target, data["attention_fused"], data["fused_ops"], num_heads)
    model = load_onnx(fp32_onnx)
    n_attention = fuse_attention(model, num_heads)
    model = _ort_transformer_fusions(model, num_heads)
    ops = Counter(n.op_type for n in model.graph.node if n.op_type in FUSED_OPS)

    def write(tmp: str) -> None:
        import onnx

        onnx.save(model, tmp)

    atomic_write_with(target, write)
    from workbench.fileio import atomic_write_json

    atomic_write_json(meta, {"key": key, "attention_fused": n_attention, "fused_ops": dict(ops)})
    log.info("fused %s: %d attention cores, %s", fp32_onnx, n_attention, dict(ops))
    return FusionInfo(target, n_attention, dict(ops), num_heads)


def _ort_transformer_fusions(model, num_heads: int):
    """ORT's BERT optimizer (BiasGelu; not SkipLayerNormalization, slower on the CPU than Add +
    LayerNormalization) on an in-memory model."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_by_fusion

    opts = FusionOptions("bert")
    opts.enable_attention = False  # done by fuse_attention; ORT's patterns miss SDPA exports
    opts.enable_skip_layer_norm = False  # slower on ORT's CPU than Add + LayerNormalization
    opts.enable_bias_skip_layer_norm = False
    try:
        fused = optimize_by_fusion(
            model, model_type="bert", num_heads=num_heads, hidden_size=0, optimization_options=opts
        )
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise EngineBuildError(f"ONNX Runtime's transformer optimizer failed: {exc}") from exc
    return fused.model


def fuse_attention(model, num_heads: int) -> int:
    """Replace each BERT attention core in ``model`` (in place) by MultiHeadAttention."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    if MASK_INPUT not in {i.name for i in graph.input}:
        raise ConfigError(f"the model has no {MASK_INPUT!r} input; attention fusion needs one")
    mask32 = f"{MASK_INPUT}_int32"
    new_nodes = []
    replaced = set()
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        core = _match_core(node.input[0], producer, inits)
        if core is None:
            continue
        ctx_node, q, k, v = core
        mha = helper.make_node(
            "MultiHeadAttention",
            [q, k, v, "", mask32],
            [node.input[0]],
            name=node.name.rsplit("/", 3)[0] + "/self/MultiHeadAttention",
            domain="com.microsoft",
            num_heads=num_heads,
        )
        new_nodes.append((ctx_node.name, mha))
        replaced.add(ctx_node.name)
    if not new_nodes:
        return 0
    by_ctx = dict(new_nodes)
    nodes = [
        helper.make_node("Cast", [MASK_INPUT], [mask32], name="MaskCast", to=TensorProto.INT32)
    ]
    for n in graph.node:
        nodes.append(by_ctx[n.name] if n.name in replaced else n)
    del graph.node[:]
    graph.node.extend(_topological(nodes, graph))
    prune_graph(graph)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(new_nodes)


def _up(tensor: str, producer, stop=("Add", "MatMul")):
    """Walk up through head reshapes/transposes/scales to the first ``stop`` node."""
    node = producer.get(tensor)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producer.get(node.input[0])
    return node if node is not None and node.op_type in stop else None


def _match_core(ctx: str, producer, inits):
    """(context node, q, k, v) when ``ctx`` is the merged-heads output of softmax(QKᵀ)·V."""
    ctx_node = producer.get(ctx)
    if ctx_node is None or ctx_node.op_type != "Reshape":
        return None
    pv = _up(ctx, producer, stop=("MatMul",))
    if pv is None or pv.input[1] in inits:
        return None
    v_node = _up(pv.input[1], producer)
    qk = _softmax_source(pv.input[0], producer)
    if v_node is None or qk is None or qk.input[1] in inits:
        return None
    q_node, k_node = _up(qk.input[0], producer), _up(qk.input[1], producer)
    if q_node is None or k_node is None:
        return None
    return ctx_node, q_node.output[0], k_node.output[0], v_node.output[0]


def _softmax_source(probs: str, producer):
    """The Q·Kᵀ MatMul behind the (masked, NaN-guarded) softmax that makes ``probs``."""
    node = producer.get(probs)
    for _ in range(4):  # Where(IsNaN(p), 0, p) guards around Softmax
        if node is None or node.op_type == "Softmax":
            break
        node = producer.get(node.input[-1]) if node.op_type == "Where" else None
    if node is None or node.op_type != "Softmax":
        return None
    scores = producer.get(node.input[0])
    if scores is not None and scores.op_type == "Add":  # + mask bias
        scores = next(
            (
                producer[i]
                for i in scores.input
                if i in producer and producer[i].op_type == "MatMul"
            ),
            None,
        )
    if scores is not None and scores.op_type in ("Mul", "Div"):  # a post-matmul scale
        scores = producer.get(scores.input[0])
    return scores if scores is not None and scores.op_type == "MatMul" else None


def _topological(nodes, graph):
    """Order ``nodes`` so every input is produced before use (the Cast was put first)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, out = list(nodes), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise EngineBuildError("attention fusion left a cycle or a dangling input; report it")
        pending = rest
    return out


def unshare_dequantize(qdq_onnx: str | Path, out: str | Path) -> Path:
    """Copy ``qdq_onnx`` with a private Quantize/DequantizeLinear pair per activation consumer.

    ORT's CPU QDQ passes (s8→u8 conversion, then MatMulIntegerToFloat) need a Q with one
    DQ and a DQ with one consumer; each copy reads its own scale and zero-point initializers,
    since identical copies are merged back by ORT's common-subexpression elimination.
    """
    import onnx

    model = load_onnx(qdq_onnx)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    replace: dict[str, list] = {}  # original Q node name -> its new Q/DQ copies
    drop: set[str] = set()
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue
        dqs = [d for d in users.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
        pairs = [(d, u) for d in dqs for u in users.get(d.output[0], [])]
        if len(pairs) < 2 or len(dqs) != len(users.get(q.output[0], [])):
            continue
        copies = []
        for k, (dq, user) in enumerate(pairs):
            scale, zp = (_copy_init(graph, inits, q.input[j], k) for j in (1, 2))
            q_k = _copy_node(q, f"_{k}", [q.input[0], scale, zp])
            dq_k = _copy_node(dq, f"_{k}", [q_k.output[0], scale, zp])
            user.input[:] = [dq_k.output[0] if i == dq.output[0] else i for i in user.input]
            copies += [q_k, dq_k]
        replace[q.name] = copies
        drop.update(d.name for d in dqs)
    nodes = []
    for n in graph.node:
        if n.name in replace:
            nodes.extend(replace[n.name])
        elif n.name not in drop:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(_topological(nodes, graph))
    return atomic_write_with(out, lambda tmp: onnx.save(model, tmp))


def _copy_node(node, suffix: str, inputs: list[str]):
    import onnx

    dup = onnx.NodeProto()
    dup.CopyFrom(node)
    dup.name, dup.output[0] = node.name + suffix, node.output[0] + suffix
    dup.input[:] = inputs
    return dup


def _copy_init(graph, inits, name: str, k: int) -> str:
    import onnx

    copy = onnx.TensorProto()
    copy.CopyFrom(inits[name])
    copy.name = f"{name}_{k}"
    graph.initializer.append(copy)
    return copy.name
