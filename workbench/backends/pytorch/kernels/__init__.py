"""Triton kernels that fuse quantization into its producers and dequantization into GEMMs.

Nothing here imports triton or torch until a kernel is asked for: the names below are
resolved lazily, and a missing triton raises ``BackendUnavailableError`` naming the extra.

- ``layernorm_quant``: (x + residual) → LayerNorm → INT8/FP8 with a static scale (+ float copy)
- ``gelu_quant``: bias add → GELU (erf) → INT8/FP8 (+ float copy)
- ``quantize``: a plain static-scale quantize, for inputs no fused producer covers
- ``scaled_gemm``: INT8×INT8→int32 or FP8×FP8→fp32, with a dequant + bias (+ GELU
  + requantize) epilogue

Example::

    from workbench.backends.pytorch.kernels import QuantSpec, layernorm_quant, scaled_gemm
    q, h = layernorm_quant(x, ln.weight, ln.bias, QuantSpec("int8", s_a), residual=r)
    y = scaled_gemm(q, w_q, s_a, w_scale, Epilogue(bias=b, out_dtype=torch.float16))
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from workbench.backends.pytorch.kernels.spec import Epilogue, QuantSpec
from workbench.errors import BackendUnavailableError

__all__ = [
    "Epilogue",
    "QuantSpec",
    "gelu_quant",
    "layernorm_quant",
    "quantize",
    "require_triton",
    "scaled_gemm",
    "triton_missing_reason",
]

_LAZY = {
    "layernorm_quant": "elementwise",
    "gelu_quant": "elementwise",
    "quantize": "elementwise",
    "scaled_gemm": "gemm",
}


def triton_missing_reason() -> str | None:
    """Why the kernels cannot run here (None when triton and torch are importable)."""
    for mod, extra in (("torch", "torch"), ("triton", "kernels")):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed; pip install 'workbench[{extra}]'"
    return None


def require_triton() -> None:
    """Raise ``BackendUnavailableError`` (exit code 3) when the kernels cannot run here."""
    reason = triton_missing_reason()
    if reason is not None:
        raise BackendUnavailableError(f"workbench Triton kernels unavailable: {reason}")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_triton()
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
