"""ONNX export of the whole classifier (token ids in -> logits out), verified against torch.

Uses the TorchScript exporter (``dynamo=False``): measured here, only that graph
lets ONNX Runtime's transformer optimizer fuse attention / LayerNorm / GELU, and
the dynamo exporter is 5-10x slower. Exports are cached by content hash.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workbench.backends.pytorch.artifact import ModelArtifact
from workbench.errors import BackendUnavailableError, ModelError
from workbench.fileio import (
    atomic_write_json,
    atomic_write_with,
    cache_root,
    sha256_file,
    sha256_json,
)

log = logging.getLogger(__name__)

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT_NAME = "logits"
OPSET = 17
EXPORT_VERSION = 1


@dataclass(frozen=True)
class ExportInfo:
    """What an export produced and how far ONNX Runtime agrees with PyTorch."""

    onnx_path: str
    onnx_sha256: str
    opset: int
    exporter: str  # "torchscript (dynamo=False)"
    max_abs_err: float
    min_cosine: float
    torch_version: str


def export_onnx(
    art: ModelArtifact,
    out_dir: str | Path | None = None,
    atol: float = 1e-3,
    min_cosine: float = 0.9999,
) -> ExportInfo:
    """Export ``art`` to ONNX (cached), check it, verify ORT vs torch; raise ModelError on drift.

    Example::

        info = export_onnx(load_artifact(model_dir))
        session = onnxruntime.InferenceSession(info.onnx_path)
    """
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "ONNX export needs torch; install the extra: pip install -e '.[torch]'"
        ) from exc
    key = sha256_json(
        {
            "model": art.content_key(),
            "opset": OPSET,
            "v": EXPORT_VERSION,
            "torch": torch.__version__,
        }
    )[:16]
    out = Path(out_dir) if out_dir else cache_root() / "onnx" / key
    onnx_path = out / "model.onnx"
    info_path = out / "export.json"
    if onnx_path.is_file() and info_path.is_file():
        info = ExportInfo(**json.loads(info_path.read_text()))
        if info.onnx_sha256 == sha256_file(onnx_path):
            return info
    from workbench.backends.pytorch.model import load_torch_classifier

    model = load_torch_classifier(art)
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(art.encoder_dir, art.max_length)
    sample = tok.encode(["an export sample sentence", "short", "a longer sentence to pad"])
    args = tuple(torch.from_numpy(sample[n]) for n in INPUT_NAMES)
    dyn = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    dyn[OUTPUT_NAME] = {0: "batch"}

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                args,
                tmp,
                input_names=INPUT_NAMES,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dyn,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        _check_and_infer_shapes(tmp)

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_with(onnx_path, write)
    max_err, cos = verify_against_torch(model, onnx_path, tok)
    if max_err > atol or cos < min_cosine:
        raise ModelError(
            f"exported ONNX disagrees with PyTorch (max-abs {max_err:.2e} > {atol} or cosine "
            f"{cos:.6f} < {min_cosine}); the export is wrong — report it with the model"
        )
    info = ExportInfo(
        onnx_path=str(onnx_path),
        onnx_sha256=sha256_file(onnx_path),
        opset=OPSET,
        exporter="torchscript (dynamo=False)",
        max_abs_err=max_err,
        min_cosine=cos,
        torch_version=torch.__version__,
    )
    atomic_write_json(info_path, asdict(info))
    log.info("exported %s (max-abs %.2e, cosine %.6f)", onnx_path, max_err, cos)
    return info


def _check_and_infer_shapes(path: str) -> None:
    import onnx

    model = onnx.load(path)
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    onnx.save(inferred, path)


def verify_against_torch(model: object, onnx_path: str | Path, tok: object) -> tuple[float, float]:
    """Max-abs error and minimum per-row cosine between ORT and torch logits on probe texts."""
    import onnxruntime as ort
    import torch

    texts = [
        "a gripping, beautifully shot film",
        "dull and far too long",
        "not bad at all , surprisingly",
        "the plot meanders but the cast is terrific and the score soars " * 4,
    ]
    feed = tok.encode(texts)  # type: ignore[attr-defined]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {k: feed[k] for k in INPUT_NAMES})[0]
    with torch.no_grad():
        want = model(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES)).numpy()  # type: ignore[operator]
    max_err = float(np.max(np.abs(got - want)))
    cos = np.sum(got * want, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12
    )
    return max_err, float(np.min(cos))
