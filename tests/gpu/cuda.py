"""``requires_cuda``: skip GPU tests with a reason where torch sees no CUDA device."""

from __future__ import annotations

import importlib.util

import pytest


def _cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (extra: torch)"
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__} (CPU-only machine)"
    return None


CUDA_SKIP_REASON = _cuda_reason()
requires_cuda = pytest.mark.skipif(CUDA_SKIP_REASON is not None, reason=CUDA_SKIP_REASON or "")
