"""INT8 and FP8 GEMMs whose epilogue dequantizes, adds the bias and (optionally) applies
GELU and requantizes, so no pass over the int32/fp32 result runs after the matmul.

``a`` is the quantized activation [M, K] (static per-tensor scale), ``w`` the quantized
weight [N, K] as ``lowp.QuantLinear.weight_q`` stores it (per-output-channel scales).
INT8 accumulates in int32 (exact), FP8 e4m3 in float32. Any M, N, K: edges are masked.

Example::

    y = scaled_gemm(xq, lin.weight_q, s_a, w_scale,
                    Epilogue(bias=lin.bias, gelu=True, requant=QuantSpec("int8", s_next)))
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from workbench.backends.pytorch.kernels._device import gelu_erf, quantize_to
from workbench.backends.pytorch.kernels.elementwise import quant_dtype, scale_tensor
from workbench.backends.pytorch.kernels.spec import Epilogue
from workbench.errors import InputMismatchError

GEMM_BLOCK = (128, 128, 64)  # (BLOCK_M, BLOCK_N, BLOCK_K) on the GPU; not yet tuned on one
_QUANT_INPUTS = (torch.int8, torch.float8_e4m3fn)


@triton.jit
def _scaled_gemm_kernel(
    a_ptr, w_ptr, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_wn, stride_wk,
    ACC_INT: tl.constexpr, HAS_BIAS: tl.constexpr, GELU: tl.constexpr, REQUANT: tl.constexpr,
    FMT: tl.constexpr, QMIN: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    if ACC_INT:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a_mask = (rm[:, None] < M) & (kk[None, :] < K)
        w_mask = (kk[:, None] < K) & (rn[None, :] < N)
        a = tl.load(
            a_ptr + rm[:, None] * stride_am + kk[None, :] * stride_ak, mask=a_mask, other=0.0
        )
        w = tl.load(
            w_ptr + kk[:, None] * stride_wk + rn[None, :] * stride_wn, mask=w_mask, other=0.0
        )
        acc = tl.dot(a, w, acc, out_dtype=acc.dtype)
    n_mask = rn < N
    # one float32 scale per column, a_scale * w_scale[n], as lowp's out_scale buffer
    col_scale = tl.load(sa_ptr) * tl.load(sw_ptr + rn, mask=n_mask, other=0.0)
    y = acc.to(tl.float32) * col_scale[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if GELU:
        y = gelu_erf(y)
    c_mask = (rm[:, None] < M) & n_mask[None, :]
    c_offs = rm[:, None].to(tl.int64) * N + rn[None, :]
    if REQUANT:
        tl.store(c_ptr + c_offs, quantize_to(y, tl.load(so_ptr), FMT, QMIN), mask=c_mask)
    else:
        tl.store(c_ptr + c_offs, y.to(c_ptr.dtype.element_ty), mask=c_mask)


def _check(a: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, ep: Epilogue) -> None:
    if a.dtype not in _QUANT_INPUTS or w.dtype != a.dtype or a.ndim != 2 or w.ndim != 2:
        raise InputMismatchError(
            f"scaled_gemm needs int8 or float8_e4m3fn a [M, K] and w [N, K] of one dtype, got "
            f"{a.dtype} {tuple(a.shape)} and {w.dtype} {tuple(w.shape)}"
        )
    if a.shape[1] != w.shape[1]:
        raise InputMismatchError(f"K differs: a {tuple(a.shape)} vs w {tuple(w.shape)} ([N, K])")
    n = w.shape[0]
    if w_scale.shape != (n,) or (ep.bias is not None and ep.bias.shape != (n,)):
        raise InputMismatchError(f"w_scale and bias must be [{n}] (one per output channel)")


def scaled_gemm(
    a: torch.Tensor,
    w: torch.Tensor,
    a_scale: float | torch.Tensor,
    w_scale: torch.Tensor,
    epilogue: Epilogue | None = None,
    *,
    block: tuple[int, int, int] = GEMM_BLOCK,
) -> torch.Tensor:
    """``epilogue(a @ w.T * a_scale * w_scale)``: [M, N] float (``out_dtype``) or quantized.

    ``block`` sets (BLOCK_M, BLOCK_N, BLOCK_K); the interpreter's tests use small ones.
    """
    ep = epilogue or Epilogue()
    _check(a, w, w_scale, ep)
    (m, k), n = a.shape, w.shape[0]
    dev = a.device
    if ep.requant is not None:
        out = torch.empty((m, n), dtype=quant_dtype(ep.requant), device=dev)
        so = scale_tensor(ep.requant.scale, dev)
    else:
        out = torch.empty((m, n), dtype=ep.out_dtype or torch.float32, device=dev)
        so = scale_tensor(1.0, dev)
    bm, bn, bk = block
    _scaled_gemm_kernel[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
        a, w, scale_tensor(a_scale, dev), w_scale.to(torch.float32).contiguous(),
        ep.bias.contiguous() if ep.bias is not None else so, so, out, m, n, k,
        a.stride(0), a.stride(1), w.stride(0), w.stride(1),
        ACC_INT=a.dtype == torch.int8, HAS_BIAS=ep.bias is not None, GELU=ep.gelu,
        REQUANT=ep.requant is not None,
        FMT=ep.requant.fmt_code if ep.requant is not None else 0,
        QMIN=ep.requant.qmin if ep.requant is not None else -128.0,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        num_warps=8 if bm * bn >= 128 * 128 else 4, num_stages=3,
    )  # fmt: skip
    return out
