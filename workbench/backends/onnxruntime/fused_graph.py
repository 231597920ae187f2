"""Builds on the fused BERT graph (``[[build]] graph = "fused"``): which families can have one,
and the request that builds FP32, static and dynamic INT8 on it.

The fused graph is ``fusion.fuse_bert``'s (MultiHeadAttention + Add + LayerNormalization +
BiasGelu; the Q/K/V, output and FFN projections stay plain MatMuls under their export names).
Static INT8 reuses the workbench's calibration table of the plain export: each fused-graph
MatMul input takes the range of the same-named MatMul's input in the plain graph (the same
tensor values; fusion renames some, e.g. the embedding LayerNorm's output becomes
``EmbedLayerNormalization_0_output``). The mapped table is cached by content hash.

Example::

    req = fused_request(req)  # fp32_onnx -> the fused model, table_file -> the mapped table
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from workbench.backends.registry import BuildRequest
from workbench.errors import CalibrationError, ConfigError
from workbench.fileio import sha256_file, sha256_json

FUSABLE = ("bert",)  # config.model_type values ORT's BERT optimizer and fuse_bert match
_WHY_NOT = {
    "distilbert": "its export has no token-type embedding and a different attention layout "
    "than ORT's BERT fusion patterns",
    "roberta": "ORT's BERT optimizer is only wired here for model_type bert (RoBERTa's "
    "position offsets and embedding fusion are not verified)",
    "xlm-roberta": "as RoBERTa: only model_type bert is verified with ORT's BERT optimizer",
    "albert": "its factorised embedding and shared layers do not match ORT's BERT fusions",
    "electra": "its embedding projection does not match ORT's EmbedLayerNormalization fusion",
    "deberta-v2": "its disentangled (relative) attention has no fused ORT kernel",
    "deberta": "its disentangled (relative) attention has no fused ORT kernel",
}


def fusion_refusal(model_type: str) -> str | None:
    """Why the fused graph is not offered for ``model_type`` (None when it is)."""
    if model_type in FUSABLE:
        return None
    reason = _WHY_NOT.get(model_type, "ORT's transformer optimizer fuses only model_type bert here")
    return (
        f"graph = 'fused' is not supported for {model_type or 'this model'}: {reason}; "
        "remove graph = 'fused' (the plain graph builds every family)"
    )


def model_type_of(kind: str, path: str) -> str:
    """``config.model_type`` of the experiment's model without loading it ("" for .onnx)."""
    if kind == "default":
        return "bert"  # the shipped MiniLM encoder
    if kind == "onnx":
        return ""
    return str(_config(Path(path)).get("model_type", ""))


def check_fusable(kind: str, path: str, build: str) -> None:
    """ConfigError (pre-flight, nothing read but config.json) when ``build`` cannot be fused."""
    if kind == "onnx":
        raise ConfigError(
            f"build {build}: graph = 'fused' is not supported for a user-supplied .onnx model "
            "(its family is unknown); point [model] path at the Hugging Face folder instead"
        )
    reason = fusion_refusal(model_type_of(kind, path))
    if reason is not None:
        raise ConfigError(f"build {build}: {reason}")


def num_heads(torch_model: str) -> int:
    """Attention heads from the model's config (a prepared classifier keeps it in encoder/)."""
    folder = Path(torch_model)
    cfg = _config(folder / "encoder") if (folder / "encoder").is_dir() else _config(folder)
    heads = int(cfg.get("num_attention_heads") or 0)
    if heads < 1:
        raise ConfigError(f"{folder}: config.json has no num_attention_heads; fusion needs it")
    return heads


def fused_request(req: BuildRequest) -> BuildRequest:
    """``req`` rewritten onto the fused graph: its FP32 model and (static) its mapped table."""
    from workbench.backends.onnxruntime.fusion import fuse_bert

    if not req.torch_model:
        raise ConfigError(f"{req.name}: graph = 'fused' needs the model's config (an HF folder)")
    fused = fuse_bert(req.fp32_onnx, num_heads=num_heads(req.torch_model)).path
    table_file = req.table_file
    if req.precision == "int8-static" and req.table_file:
        table_file = str(mapped_table(req.fp32_onnx, fused, req.table_file, req.cache_dir))
    return replace(req, fp32_onnx=str(fused), table_file=table_file)


def mapped_table(plain: str | Path, fused: str | Path, table_file: str, cache_dir: str) -> Path:
    """The plain export's calibration table re-keyed to the fused graph's tensor names."""
    from workbench.calibration.graph import load_onnx
    from workbench.calibration.table import CalibrationTable

    table = CalibrationTable.load(table_file)
    fused_sha = sha256_file(fused)
    key = sha256_json({"amax": table.amax, "plain": sha256_file(plain), "fused": fused_sha})[:16]
    out = Path(cache_dir) / "fused-tables" / key / f"{table.method}.json"
    if out.is_file():
        return out
    plain_inputs = _matmul_inputs(load_onnx(plain, load_external_data=False))
    amax: dict[str, float] = {}
    for node, inputs in _matmul_inputs(load_onnx(fused, load_external_data=False)).items():
        for i, name in enumerate(inputs):
            src = plain_inputs.get(node, ())
            if i < len(src) and src[i] in table.amax:
                amax[name] = table.amax[src[i]]
    if not amax:
        raise CalibrationError(
            f"no fused-graph MatMul input maps to the table {table_file}; recalibrate the model"
        )
    replace(table, amax=amax, model_sha256=fused_sha).save(out)
    return out


def _matmul_inputs(model: Any) -> dict[str, tuple[str, ...]]:
    init = {i.name for i in model.graph.initializer}
    return {
        n.name: tuple(i for i in n.input[:2] if i not in init)
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm")
    }


def _config(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}/config.json cannot be read ({exc})") from exc
