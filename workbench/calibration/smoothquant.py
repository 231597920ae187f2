"""SmoothQuant-style scale migration into the LayerNorm in front of MatMuls (float-exact).

Activation outliers in BERT sit in a few LayerNorm output channels; one per-tensor INT8
scale then leaves the other channels only a handful of levels. SmoothQuant (Xiao et al.
2023) divides channel ``j`` of the activation by ``s_j = max|X_j|^α / max|W_j|^(1−α)``
and multiplies row ``j`` of every consuming weight by ``s_j``: ``(X/s)(sW) = XW``. Here the
division goes into the LayerNorm's gamma and beta (free at run time), for each LayerNorm
(``LayerNormalization``, or ORT's fused ``SkipLayerNormalization`` and
``EmbedLayerNormalization``) whose output feeds
MatMul/Gemm nodes with constant weights (Q/K/V and FFN-in in BERT). BERT is post-LN: the
same LayerNorm output is also the residual; those other consumers read it through one
``Mul(s)`` that restores the original values, so the model stays exact in float. The
LayerNorm output keeps its name, so calibration tables and exclusions see the same tensors.
Decomposed LayerNorms (opset < 17 exports) are not recognised and are left alone.

Example::

    sites = smoothing_sites("model.onnx")
    amax = channel_absmax("model.onnx", sites, feeds, open_runner=open_ort_runner)
    smooth_model(Path("model.onnx"), amax, 0.5, Path("model.smooth.onnx"))
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from workbench.calibration.graph import load_onnx
from workbench.errors import ConfigError
from workbench.fileio import atomic_write_with

log = logging.getLogger(__name__)

# op type -> (gamma input index, beta input index)
_NORMS = {
    "LayerNormalization": (1, 2),
    "SkipLayerNormalization": (2, 3),  # ORT fusion: Add + LayerNorm
    "EmbedLayerNormalization": (5, 6),  # ORT fusion: embeddings + LayerNorm
}
_S_RANGE = (1e-5, 1e5)  # clamp migration factors: no channel is scaled to 0 or inf


def smoothing_sites(fp32_onnx: str | Path) -> list[str]:
    """LayerNorm outputs that feed at least one MatMul/Gemm with a constant weight.

    Example::

        smoothing_sites("model.onnx")  # ['/.../LayerNorm/LayerNormalization_output_0', ...]
    """
    model = load_onnx(fp32_onnx, load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    consumers = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    out = []
    for node in model.graph.node:
        if node.op_type not in _NORMS or node.output[0] in graph_outputs:
            continue
        if any(_weight_of(c, node.output[0], inits) for c in consumers.get(node.output[0], [])):
            out.append(node.output[0])
    return out


def smooth_model(
    fp32_onnx: Path, act_absmax: dict[str, np.ndarray], alpha: float, out_path: Path
) -> Path:
    """Write a copy of ``fp32_onnx`` with activation scales migrated into LayerNorms.

    ``act_absmax`` maps LayerNorm outputs (``smoothing_sites``) to their per-channel abs-max
    (``stats.channel_absmax``); sites without an entry are left alone. ``alpha`` in [0, 1]
    is the migration strength (0.5 in the paper). Returns ``out_path``.
    """
    import onnx
    from onnx import numpy_helper

    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"SmoothQuant alpha must be in [0, 1], got {alpha}; 0.5 is typical")
    model = load_onnx(fp32_onnx)
    inits = {i.name: i for i in model.graph.initializer}
    consumers = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    new_nodes, n_sites = [], 0
    for node in model.graph.node:
        new_nodes.append(node)
        out = node.output[0] if node.output else ""
        if node.op_type not in _NORMS or out not in act_absmax or out in graph_outputs:
            continue
        users = consumers.get(out, [])
        smoothed = [(c, w) for c in users if (w := _weight_of(c, out, inits))]
        gamma_idx, _ = _NORMS[node.op_type]
        if not smoothed or len(node.input) <= gamma_idx or node.input[gamma_idx] not in inits:
            continue
        x_max = np.asarray(act_absmax[out], dtype=np.float64).reshape(-1)
        weights = {w: _as_rows(numpy_helper.to_array(inits[w]), c) for c, w in smoothed}
        if any(m.shape[0] != x_max.size for m in weights.values()):
            raise ConfigError(
                f"act_absmax[{out!r}] has {x_max.size} channels, its MatMul weights do not; "
                "collect it with channel_absmax on this model"
            )
        w_max = np.max([np.abs(m).max(axis=1) for m in weights.values()], axis=0)
        s = _factors(x_max, w_max, alpha)
        _scale_norm(model, node, s, inits)
        for c, w in smoothed:
            _scale_weight(model, c, w, weights[w] * s[:, None], inits, out)
        rest = [c for c in users if all(c is not sc for sc, _ in smoothed)]
        if rest:
            new_nodes.append(_restore(model, out, s, rest))
        n_sites += 1
    if n_sites == 0:
        raise ConfigError(
            "no LayerNorm -> MatMul site of this model has per-channel statistics; pass "
            "channel_absmax(model, smoothing_sites(model), feeds)"
        )
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    _drop_unused(model)
    log.info("SmoothQuant (alpha %.2f): %d LayerNorm sites", alpha, n_sites)

    def write(tmp: str) -> None:
        onnx.checker.check_model(model)
        onnx.save(model, tmp)

    return atomic_write_with(out_path, write)


def _factors(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^α / max|W_j|^(1−α); 1 where a channel is all zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.power(x_max, alpha) / np.power(w_max, 1.0 - alpha)
    s = np.where((x_max > 0) & (w_max > 0) & np.isfinite(s), s, 1.0)
    return np.clip(s, *_S_RANGE).astype(np.float32)


def _consumers(model) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _weight_of(node, act: str, inits) -> str | None:
    """The constant weight ``node`` multiplies ``act`` by (rows = ``act``'s channels), if any."""
    if node.op_type not in ("MatMul", "Gemm", "Attention") or len(node.input) < 2:
        return None
    if node.input[0] != act or node.input[1] not in inits:
        return None
    if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
        return None
    return node.input[1] if len(inits[node.input[1]].dims) == 2 else None


def _trans_b(node) -> bool:
    return node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)


def _as_rows(w: np.ndarray, node) -> np.ndarray:
    """The weight as [input channels, outputs] (Gemm with transB=1 stores it transposed)."""
    return (w.T if _trans_b(node) else w).astype(np.float64)


def _scale_norm(model, node, s: np.ndarray, inits) -> None:
    """gamma/s and beta/s as new initializers (the originals may be shared)."""
    from onnx import numpy_helper

    for idx in _NORMS[node.op_type]:
        if idx >= len(node.input) or node.input[idx] not in inits:
            continue
        v = numpy_helper.to_array(inits[node.input[idx]]).astype(np.float64)
        name = f"{node.input[idx]}_smooth_{node.name or node.output[0]}"
        model.graph.initializer.append(numpy_helper.from_array((v / s).astype(np.float32), name))
        node.input[idx] = name


def _scale_weight(model, node, w: str, rows: np.ndarray, inits, act: str) -> None:
    from onnx import numpy_helper

    name = f"{w}_smooth_{act}"
    if name not in {i.name for i in model.graph.initializer}:
        arr = rows.T if _trans_b(node) else rows
        model.graph.initializer.append(numpy_helper.from_array(arr.astype(np.float32), name))
    node.input[1] = name


def _restore(model, act: str, s: np.ndarray, rest: list):
    """A Mul(act, s) that the other consumers (residual Add, pooling) read instead of ``act``."""
    from onnx import helper, numpy_helper

    s_name, restored = f"{act}_smooth_scale", f"{act}_unsmoothed"
    model.graph.initializer.append(numpy_helper.from_array(s, s_name))
    for c in rest:
        for k, i in enumerate(c.input):
            if i == act:
                c.input[k] = restored
    return helper.make_node("Mul", [act, s_name], [restored], f"{act}_unsmooth")


def _drop_unused(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
