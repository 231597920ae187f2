"""PyTorch in the backend registry: FP32 on CPU; FP32/TF32/FP16/BF16 on CUDA (graphs, compile)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workbench.backends.base import Runner
from workbench.backends.registry import Artifact, BuildRequest, CalibrationFeeds
from workbench.errors import ConfigError
from workbench.fileio import sha256_file, sha256_json
from workbench.results.records import Int8Coverage

if TYPE_CHECKING:
    from torch import nn

INSTALL = "pip install -e '.[torch]' (torch==2.13.0 CPU lies on disk here)"


class PyTorchBackend:
    """Runs the FP32 classifier module itself (the reference) or cast to a lower precision."""

    name = "pytorch"

    def precisions(self, device: str) -> tuple[str, ...]:
        return ("fp32",) if device == "cpu" else ("fp32", "tf32", "fp16", "bf16")

    def unavailable_reason(self, device: str) -> str | None:
        try:
            import torch
        except ImportError:
            return f"torch is not installed: {INSTALL}"
        if device == "cuda" and not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA GPU on this machine"
        return None

    def build(self, req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
        if not req.torch_model:
            raise ConfigError(
                f"{req.name}: an .onnx model has no PyTorch module; use backend = onnxruntime"
            )
        path = Path(req.torch_model)
        detail = f"PyTorch {req.precision.upper()} on {req.device}"
        if req.compile:
            detail += ", torch.compile"
        if req.cuda_graphs:
            detail += ", CUDA graphs"
        return Artifact(str(path), model_dir_sha256(path), detail)

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        from workbench.backends.pytorch.runner import TorchRunner

        return TorchRunner(
            load_module(artifact.model_path),
            name=req.name,
            precision=req.precision,
            device=req.device,
            threads=threads or None,
            compile_mode="default" if req.compile else None,
            cuda_graphs=req.cuda_graphs,
        )

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        return None


def load_module(path: str | Path) -> nn.Module:
    """The FP32 classifier in ``path``: a prepared workbench classifier or an HF folder."""
    from workbench.backends.pytorch.artifact import META_FILE

    p = Path(path)
    if (p / META_FILE).is_file():
        from workbench.backends.pytorch.artifact import load_artifact
        from workbench.backends.pytorch.model import load_torch_classifier

        return load_torch_classifier(load_artifact(p))
    from workbench.backends.pytorch.hf import inspect_hf_folder, load_hf_classifier

    return load_hf_classifier(inspect_hf_folder(p))


def model_dir_sha256(path: Path) -> str:
    """sha256 over a model folder's files (names and contents)."""
    files = sorted(f for f in path.rglob("*") if f.is_file())
    return sha256_json({str(f.relative_to(path)): sha256_file(f) for f in files})


BACKEND = PyTorchBackend()
