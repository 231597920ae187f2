"""PyTorch in the backend registry: FP32 on CPU; FP32/TF32/FP16/BF16 on CUDA (graphs, compile)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.backends.base import Runner
from workbench.backends.registry import Artifact, BuildRequest, CalibrationFeeds, Capabilities
from workbench.errors import CalibrationError, ConfigError
from workbench.fileio import sha256_file, sha256_json
from workbench.results.records import Int8Coverage

if TYPE_CHECKING:
    from torch import nn

LOWP = ("fp8", "int8-static", "int8-dynamic")  # from the workbench's calibration table
EVAL_BATCH = 128  # compiled / graphed CUDA builds evaluate in batches of this x max_length
INSTALL = "pip install -e '.[torch]' (torch==2.13.0 CPU lies on disk here)"


class PyTorchBackend:
    """Runs the FP32 classifier module itself (the reference) or cast to a lower precision."""

    name = "pytorch"
    capabilities = Capabilities(
        short_name="torch",
        precisions={"cpu": ("fp32",), "cuda": ("fp32", "tf32", "fp16", "bf16", *LOWP)},
        cuda_event_timing=True,
        compile_on=("cuda",),
        needs_torch_module=True,
        reference=True,
        own_int8_kernels=True,
    )

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
        if req.precision in LOWP:
            if not req.table_file:
                raise CalibrationError(f"{req.name}: {req.precision} needs a calibration table")
            scales = "amax/448 (e4m3)" if req.precision == "fp8" else "amax/127"
            detail += (
                f": every Linear quantized from the workbench's calibration table "
                f"({Path(req.table_file).stem}), activation scale {scales}, weights "
                f"{'per-tensor' if req.precision == 'fp8' else 'per-output-channel'}, FP16 compute"
            )
        if req.compile:
            detail += ", torch.compile"
        if req.cuda_graphs:
            detail += ", CUDA graphs"
        return Artifact(str(path), model_dir_sha256(path), detail)

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        from workbench.backends.pytorch.runner import TorchRunner

        module = load_module(artifact.model_path)
        precision = req.precision
        if precision in LOWP:
            module = quantized_module(module, req)
            precision = "fp16"  # compute dtype around the quantized matmuls
        runner = TorchRunner(
            module,
            name=req.name,
            precision=precision,
            device=req.device,
            threads=threads or None,
            compile_mode="default" if req.compile else None,
            cuda_graphs=req.cuda_graphs,
            pad_to=(EVAL_BATCH, req.max_length) if _fixed_shapes(req) else None,
        )
        runner.precision = req.precision
        return runner

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        return None


def _fixed_shapes(req: BuildRequest) -> bool:
    """Compiled or graphed CUDA builds evaluate at one padded shape: one compile, one graph
    (length-sorted batches would otherwise compile and capture dozens of shapes)."""
    return req.device == "cuda" and (req.compile or req.cuda_graphs)


def quantized_module(module: nn.Module, req: BuildRequest) -> nn.Module:
    """``module`` with its Linears quantized from ``req``'s calibration table; the layers the
    Q/DQ writer keeps in float (``exclude``) stay float here too."""
    from workbench.backends.pytorch.lowp_map import module_path_of_node, quantize_from_table
    from workbench.calibration.qdq import excluded_nodes
    from workbench.calibration.table import CalibrationTable

    keep = [module_path_of_node(n) for n in excluded_nodes(req.fp32_onnx, req.exclude)]
    table = CalibrationTable.load(req.table_file)
    return quantize_from_table(
        module.to(req.device), table, req.fp32_onnx, req.precision,  # type: ignore[arg-type]
        exclude=[k for k in keep if k],
        per_channel=req.precision != "fp8" and req.per_channel,  # FP8: per-tensor (faster)
    )  # fmt: skip


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
    """sha256 over a model folder's files (names and contents), hashed once per process for
    an unchanged folder (every build of a run asks for it)."""
    files = sorted(f for f in Path(path).rglob("*") if f.is_file())
    stamp = tuple((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _dir_sha256(str(path), stamp)


@lru_cache(maxsize=32)
def _dir_sha256(root: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return sha256_json({name: sha256_file(Path(root) / name) for name, _, _ in stamp})


BACKEND = PyTorchBackend()
