"""ONNX export of a whole classifier (token ids in -> logits out), verified against torch.

``export_classifier`` exports any torch classifier (the workbench's own, a user's HF
folder); ``export_onnx`` is that for the workbench's prepared default model.

Uses the TorchScript exporter (``dynamo=False``): measured here, only that graph
lets ONNX Runtime's transformer optimizer fuse attention / LayerNorm / GELU, and
the dynamo exporter is 5-10x slower. Exports are cached by content hash.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from workbench.data.tokenize import TextTokenizer

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
    """Export the workbench's own classifier ``art`` to ONNX (cached, verified against torch).

    Example::

        info = export_onnx(load_artifact(model_dir))
        session = onnxruntime.InferenceSession(info.onnx_path)
    """
    cached = cached_export(art.content_key(), INPUT_NAMES, out_dir)
    if cached is not None:
        return cached
    from workbench.backends.pytorch.model import load_torch_classifier
    from workbench.data.tokenize import TextTokenizer

    model = load_torch_classifier(art)
    tok = TextTokenizer.from_model_dir(art.encoder_dir, art.max_length)
    return export_classifier(
        model, tok, art.content_key(), INPUT_NAMES, atol, min_cosine, out_dir=out_dir
    )


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "ONNX export needs torch; install the extra: pip install -e '.[torch]'"
        ) from exc
    return torch


def export_dir(
    content_key: str,
    input_names: Sequence[str],
    out_dir: str | Path | None = None,
    int8_ready: bool = False,
) -> Path:
    """Where the export of ``content_key`` lives: ``out_dir`` or cache_root()/onnx/<key>."""
    if out_dir is not None:
        return Path(out_dir)
    spec: dict[str, Any] = {
        "model": content_key,
        "opset": OPSET,
        "v": EXPORT_VERSION,
        "torch": _torch().__version__,
    }
    if list(input_names) != INPUT_NAMES:  # keeps the keys of existing default exports
        spec["inputs"] = list(input_names)
    if int8_ready:
        spec["int8_ready"] = True
    return cache_root() / "onnx" / sha256_json(spec)[:16]


def cached_export(
    content_key: str,
    input_names: Sequence[str],
    out_dir: str | Path | None = None,
    int8_ready: bool = False,
) -> ExportInfo | None:
    """The finished, intact export of ``content_key`` if there is one (no torch model needed).

    ``export.json`` is the entry's manifest (it holds the model's sha256); an entry that does
    not verify is logged and rebuilt, never trusted.
    """
    out = export_dir(content_key, input_names, out_dir, int8_ready)
    onnx_path, info_path = out / "model.onnx", out / "export.json"
    if not info_path.is_file():
        return None
    try:
        info = ExportInfo(**json.loads(info_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("cached export %s is unreadable (%s); exporting again", info_path, exc)
        return None
    if not onnx_path.is_file() or info.onnx_sha256 != sha256_file(onnx_path):
        log.warning("cached export %s does not match its sha256; exporting again", onnx_path)
        return None
    return info


def export_classifier(
    module: Any,
    tok: TextTokenizer,
    content_key: str,
    input_names: Sequence[str],
    atol: float = 1e-3,
    min_cosine: float = 0.9999,
    *,
    out_dir: str | Path | None = None,
    int8_ready: bool = False,
) -> ExportInfo:
    """Export any ``forward(**inputs) -> logits`` torch classifier to ONNX (cached by content_key).

    Only ``input_names`` become graph inputs; ORT is checked against torch and a drift
    beyond ``atol`` / ``min_cosine`` raises ModelError. ``int8_ready`` rewrites the graph so
    ORT's CPU QDQ fusion reaches every Linear: 2-D Linears (pooler, head) as MatMul with the
    bias as Sub, MatMuls of weights alone (DeBERTa's relative-position projections) folded
    into constants. Example::

        info = inspect_hf_folder(folder)
        export_classifier(load_hf_classifier(info), tok, info.content_key, info.input_names)
    """
    names = _check_input_names(input_names)
    cached = cached_export(content_key, names, out_dir, int8_ready)
    if cached is not None:
        return cached
    torch = _torch()
    out = export_dir(content_key, names, out_dir, int8_ready)
    onnx_path, info_path = out / "model.onnx", out / "export.json"
    sample = tok.encode(["an export sample sentence", "short", "a longer sentence to pad"])
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    dyn: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn[OUTPUT_NAME] = {0: "batch"}
    positional = _positional(module, names)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                positional,
                args,
                tmp,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dyn,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        _check_and_infer_shapes(tmp, int8_ready)

    out.mkdir(parents=True, exist_ok=True)
    info_path.unlink(missing_ok=True)  # a stale manifest must not vouch for the new file
    atomic_write_with(onnx_path, write)
    _check_graph_inputs(onnx_path, names)
    max_err, cos = verify_against_torch(module, onnx_path, tok, names)
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


def _check_input_names(input_names: Sequence[str]) -> list[str]:
    names = list(input_names)
    unknown = [n for n in names if n not in INPUT_NAMES]
    if "input_ids" not in names or unknown or len(set(names)) != len(names):
        raise ModelError(
            f"cannot export with inputs {names}; a classifier takes input_ids plus any of "
            f"{INPUT_NAMES[1:]}, each once"
        )
    return names


def _check_graph_inputs(onnx_path: Path, names: list[str]) -> None:
    """The exporter drops inputs the model never reads: the graph must take all ``names``."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    got = [i.name for i in graph.input]
    if got != names:
        onnx_path.unlink(missing_ok=True)
        raise ModelError(
            f"the exported graph takes {got}, not {names}: the model ignores "
            f"{sorted(set(names) - set(got))}; drop them from its inputs (report it with the model)"
        )


def _positional(module: Any, names: list[str]) -> Any:
    """Adapter the tracer calls positionally: ``f(*tensors) == module(**dict(zip(names, ...)))``."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, tensors, strict=True)))

    return Positional().eval()


def _check_and_infer_shapes(path: str, int8_ready: bool = False) -> None:
    import onnx

    from workbench.backends.onnxruntime import int8_ready as ready

    model = onnx.load(path)
    ready.bypass_weight_identities(model)
    if int8_ready:
        ready.gemm_to_matmul(model)
        ready.fold_constant_matmuls(model)
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    if int8_ready:
        ready.bias_as_sub(inferred)
    onnx.save(inferred, path)


def verify_against_torch(
    model: object,
    onnx_path: str | Path,
    tok: TextTokenizer,
    input_names: Sequence[str] = tuple(INPUT_NAMES),
) -> tuple[float, float]:
    """Max-abs error and minimum per-row cosine between ORT and torch logits on probe texts."""
    import onnxruntime as ort
    import torch

    texts = [
        "a gripping, beautifully shot film",
        "dull and far too long",
        "not bad at all , surprisingly",
        "the plot meanders but the cast is terrific and the score soars " * 4,
    ]
    feed = tok.encode(texts)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {k: feed[k] for k in input_names})[0]
    with torch.no_grad():
        want = model(**{n: torch.from_numpy(feed[n]) for n in input_names}).numpy()  # type: ignore[operator]
    max_err = float(np.max(np.abs(got - want)))
    cos = np.sum(got * want, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12
    )
    return max_err, float(np.min(cos))
