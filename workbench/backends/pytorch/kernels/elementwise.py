"""LayerNorm(+residual) → quantize, bias + GELU → quantize, and a plain quantize, in Triton.

Each kernel computes in float32 and writes the quantized tensor (INT8 or FP8 e4m3, static
per-tensor scale) directly, so no separate quantize pass reads the activation again; the
float result is written as well when another consumer (the residual path) needs it.

Example::

    spec = QuantSpec("fp8", act_scale(amax, "fp8"))
    q, h = layernorm_quant(attn_out, ln.weight, ln.bias, spec, residual=hidden, eps=1e-12)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench.backends.pytorch.kernels._device import gelu_erf, quantize_to
from workbench.backends.pytorch.kernels.spec import QuantSpec
from workbench.errors import InputMismatchError

ELEMENTWISE_BLOCK = 1024  # elements per program of the element-wise kernels


@triton.jit
def _layernorm_quant_kernel(
    x_ptr, r_ptr, w_ptr, b_ptr, s_ptr, q_ptr, y_ptr, N, eps,
    HAS_RES: tl.constexpr, STORE_Y: tl.constexpr, FMT: tl.constexpr, QMIN: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    m = cols < N
    h = tl.load(x_ptr + row * N + cols, mask=m, other=0.0).to(tl.float32)
    if HAS_RES:
        h += tl.load(r_ptr + row * N + cols, mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(h, axis=0) / N
    d = tl.where(m, h - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / N + eps)
    w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=m, other=0.0).to(tl.float32)
    y = d * rstd * w + b
    if STORE_Y:
        tl.store(y_ptr + row * N + cols, y.to(y_ptr.dtype.element_ty), mask=m)
    q = quantize_to(y, tl.load(s_ptr), FMT, QMIN)
    tl.store(q_ptr + row * N + cols, q, mask=m)


@triton.jit
def _gelu_quant_kernel(
    x_ptr, bias_ptr, s_ptr, q_ptr, y_ptr, numel, N,
    HAS_BIAS: tl.constexpr, GELU: tl.constexpr, STORE_Y: tl.constexpr, FMT: tl.constexpr,
    QMIN: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < numel
    v = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + offs % N, mask=m, other=0.0).to(tl.float32)
    if GELU:
        v = gelu_erf(v)
    if STORE_Y:
        tl.store(y_ptr + offs, v.to(y_ptr.dtype.element_ty), mask=m)
    tl.store(q_ptr + offs, quantize_to(v, tl.load(s_ptr), FMT, QMIN), mask=m)


def quant_dtype(spec: QuantSpec) -> torch.dtype:
    """The torch dtype of ``spec``'s quantized tensors."""
    return torch.int8 if spec.fmt == "int8" else torch.float8_e4m3fn


def scale_tensor(scale: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A one-element float32 tensor on ``device`` holding ``scale`` (no copy if it is one)."""
    if isinstance(scale, torch.Tensor):
        return scale.reshape(1).to(device=device, dtype=torch.float32)
    return torch.tensor([float(scale)], dtype=torch.float32, device=device)


def _rows(x: torch.Tensor, what: str, n: int | None = None) -> torch.Tensor:
    if not x.is_floating_point() or x.ndim < 1 or (n is not None and x.shape[-1] != n):
        raise InputMismatchError(
            f"{what}: expected a float tensor [..., {n or 'N'}], got {x.dtype} {tuple(x.shape)}"
        )
    return x.reshape(-1, x.shape[-1]).contiguous()


def layernorm_quant(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    quant: QuantSpec,
    *,
    residual: torch.Tensor | None = None,
    eps: float = 1e-12,
    float_out: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``LayerNorm(x + residual)`` quantized by ``quant``; returns ``(q, y)``.

    ``y`` is the normalized output in ``x``'s dtype (None unless ``float_out``); ``q`` is
    quantized from the float32 value, not from ``y`` rounded to ``x``'s dtype.
    """
    n = x.shape[-1]
    x2 = _rows(x, "layernorm_quant input")
    r2 = _rows(residual, "residual", n) if residual is not None else x2
    w, b = weight.contiguous(), bias.contiguous()
    if w.shape != (n,) or b.shape != (n,):
        raise InputMismatchError(f"LayerNorm weight/bias must be [{n}], got {tuple(w.shape)}")
    q = torch.empty(x2.shape, dtype=quant_dtype(quant), device=x.device)
    y = torch.empty_like(x2) if float_out else q
    _layernorm_quant_kernel[(x2.shape[0],)](
        x2, r2, w, b, scale_tensor(quant.scale, x.device), q, y, n, float(eps),
        HAS_RES=residual is not None, STORE_Y=float_out, FMT=quant.fmt_code, QMIN=quant.qmin,
        BLOCK=max(triton.next_power_of_2(n), 16),
    )  # fmt: skip
    return q.reshape(x.shape), (y.reshape(x.shape) if float_out else None)


def gelu_quant(
    x: torch.Tensor,
    quant: QuantSpec,
    *,
    bias: torch.Tensor | None = None,
    float_out: bool = False,
    block: int = ELEMENTWISE_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``GELU(x + bias)`` (erf form) quantized by ``quant``; returns ``(q, y or None)``."""
    return _pointwise(x, quant, bias, gelu=True, float_out=float_out, block=block)


def quantize(x: torch.Tensor, quant: QuantSpec, *, block: int = ELEMENTWISE_BLOCK) -> torch.Tensor:
    """``x`` quantized by ``quant`` (same shape), e.g. the attention output before its GEMM."""
    return _pointwise(x, quant, None, gelu=False, float_out=False, block=block)[0]


def _pointwise(
    x: torch.Tensor,
    quant: QuantSpec,
    bias: torch.Tensor | None,
    *,
    gelu: bool,
    float_out: bool,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = x.shape[-1] if x.ndim else 1
    x2 = _rows(x.reshape(-1, n), "quantize input")
    if bias is not None and bias.shape != (n,):
        raise InputMismatchError(f"bias must be [{n}] (the last dim), got {tuple(bias.shape)}")
    q = torch.empty(x2.shape, dtype=quant_dtype(quant), device=x.device)
    y = torch.empty_like(x2) if float_out else q
    _gelu_quant_kernel[(triton.cdiv(x2.numel(), block),)](
        x2, bias.contiguous() if bias is not None else x2, scale_tensor(quant.scale, x.device),
        q, y, x2.numel(), n,
        HAS_BIAS=bias is not None, GELU=gelu, STORE_Y=float_out, FMT=quant.fmt_code,
        QMIN=quant.qmin, BLOCK=block,
    )  # fmt: skip
    return q.reshape(x.shape), (y.reshape(x.shape) if float_out else None)
