"""FP16 ONNX model for ONNX Runtime's CUDA provider, made with ONNX Runtime's own tools.

``optimize_model(model_type="bert", opt_level=0)`` applies the Python BERT fusions
(SkipLayerNormalization, BiasGelu; no ORT session, so the result does not depend on
the machine), then ``convert_float_to_float16(keep_io_types=True)`` stores weights
and activations in FP16 while the token ids stay int64 and the logits float32.
Cached as a sealed entry keyed by the FP32 model's hash and the ORT version.

Example::

    b = build_fp16("model.onnx", cache / "ort-fp16")
    runner = make_ort_cuda_runner(b.path, precision="fp16")
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import EngineBuildError, ModelError
from workbench.fileio import build_entry, reuse_entry, sha256_file, sha256_json

log = logging.getLogger(__name__)

FP16_VERSION = 1
MODEL_FILE = "model.onnx"
INFO_FILE = "fp16.json"
FUSED_OPS = ("SkipLayerNormalization", "BiasGelu", "FastGelu", "Attention", "MultiHeadAttention")


@dataclass(frozen=True)
class Fp16Build:
    """The FP16 model and what the conversion did to it."""

    path: Path
    fused_ops: dict[str, int]  # fused op type -> count
    fp16_initializers: int
    float_outputs: list[str]  # outputs kept float32 by keep_io_types

    @property
    def detail(self) -> str:
        fused = ", ".join(f"{n} {k}" for k, n in sorted(self.fused_ops.items())) or "none"
        return (
            "FP16 ONNX: ORT transformer optimizer (bert, opt_level 0; fused: "
            f"{fused}) + ORT float16 conversion with keep_io_types "
            f"({self.fp16_initializers} FP16 initializers, {'/'.join(self.float_outputs)} "
            "kept float32)"
        )


def build_fp16(fp32_onnx: str | Path, cache_dir: str | Path) -> Fp16Build:
    """The FP16 copy of ``fp32_onnx`` under ``cache_dir/<key>/``, built once per content hash."""
    import onnxruntime

    src = Path(fp32_onnx)
    if not src.is_file():
        raise ModelError(f"FP32 ONNX model {src} does not exist; export the model first")
    key = sha256_json(
        {"onnx": sha256_file(src), "ort": onnxruntime.__version__, "v": FP16_VERSION}
    )[:16]
    out = Path(cache_dir) / key / MODEL_FILE
    if not reuse_entry(out.parent, "FP16 ONNX model"):
        build_entry(out, lambda tmp: write_fp16_model(src, tmp))
    info = json.loads((out.parent / INFO_FILE).read_text(encoding="utf-8"))
    return Fp16Build(out, info["fused_ops"], info["fp16_initializers"], info["float_outputs"])


def write_fp16_model(fp32_onnx: str | Path, out: str | Path) -> None:
    """Fuse and convert ``fp32_onnx`` to FP16 at ``out``; a summary goes next to it (fp16.json)."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    out = Path(out)
    try:
        model = optimize_model(
            str(fp32_onnx), model_type="bert", num_heads=0, hidden_size=0, opt_level=0
        )
        stats = model.get_fused_operator_statistics()
        fused = {k: stats[k] for k in FUSED_OPS if stats.get(k)}
        model.convert_float_to_float16(keep_io_types=True)
    except (ValueError, RuntimeError, AssertionError, KeyError) as exc:
        raise EngineBuildError(
            f"ONNX Runtime's FP16 conversion of {fp32_onnx} failed: {exc}; "
            "is it the workbench's TorchScript export of a BERT-family model?"
        ) from exc
    graph = model.model.graph
    fp16_inits = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    float_outputs = [
        o.name for o in graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ]
    if fp16_inits == 0:
        raise EngineBuildError(f"FP16 conversion of {fp32_onnx} left no FP16 weights")
    model.save_model_to_file(str(out))
    ops = Counter(n.op_type for n in graph.node)
    summary = {
        "fused_ops": fused,
        "fp16_initializers": fp16_inits,
        "float_outputs": float_outputs,
        "op_counts": dict(ops),
    }
    (out.parent / INFO_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log.info("FP16 model %s: %s", out, summary["fused_ops"])
