"""ONNX Runtime on the CUDA execution provider (needs ``onnxruntime-gpu``).

A thin factory over ``OrtRunner``: checks that the CUDA provider is really there
and says why not otherwise, so callers can skip the build with a reason.
"""

from __future__ import annotations

from pathlib import Path

from workbench.backends.onnxruntime.runner import OrtRunner
from workbench.errors import BackendUnavailableError

CUDA_PROVIDER = "CUDAExecutionProvider"


def ort_cuda_unavailable_reason() -> str | None:
    """None when ONNX Runtime can run on CUDA here, else one line saying why not.

    Example::

        if (why := ort_cuda_unavailable_reason()) is None:
            runner = make_ort_cuda_runner("model.onnx")
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime-gpu)"
    providers = ort.get_available_providers()
    if CUDA_PROVIDER not in providers:
        return (
            f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} (providers: {providers}); "
            "install onnxruntime-gpu in place of onnxruntime"
        )
    try:
        import torch
    except ImportError:
        return None  # onnxruntime-gpu brings its own CUDA libraries; let the session decide
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def make_ort_cuda_runner(
    model_path: str | Path, name: str = "ort-cuda", precision: str = "fp32"
) -> OrtRunner:
    """An ``OrtRunner`` on the first visible GPU (pick it with ``CUDA_VISIBLE_DEVICES``).

    The CPU provider stays as the fallback for nodes CUDA does not implement.

    Example::

        with make_ort_cuda_runner(info.onnx_path) as r:
            logits = r.infer(feed)["logits"]
    """
    reason = ort_cuda_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"ONNX Runtime CUDA backend unavailable: {reason}")
    return OrtRunner(
        model_path,
        name=name,
        precision=precision,
        providers=[CUDA_PROVIDER, "CPUExecutionProvider"],
    )
