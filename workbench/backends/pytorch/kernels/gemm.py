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

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from workbench.backends.pytorch.kernels._device import gelu_erf, quantize_to
from workbench.backends.pytorch.kernels.elementwise import quant_dtype, scale_tensor
from workbench.backends.pytorch.kernels.spec import Epilogue
from workbench.errors import InputMismatchError

GEMM_BLOCK = (128, 128, 64)  # (BLOCK_M, BLOCK_N, BLOCK_K): the default when no config is given
GROUP_M = 8  # programs walk M in groups of 8 tiles so neighbours share B tiles in L2
_QUANT_INPUTS = (torch.int8, torch.float8_e4m3fn)


@triton.jit
def _scaled_gemm_kernel(
    a_ptr, w_ptr, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_wn, stride_wk,
    ACC_INT: tl.constexpr, HAS_BIAS: tl.constexpr, GELU: tl.constexpr, REQUANT: tl.constexpr,
    FMT: tl.constexpr, QMIN: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    first_m = (pid // (GROUP * grid_n)) * GROUP
    group_size = tl.minimum(grid_m - first_m, GROUP)
    pid_m = first_m + (pid % (GROUP * grid_n)) % group_size
    pid_n = (pid % (GROUP * grid_n)) // group_size
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    if ACC_INT:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a_mask = (rm[:, None] < M) & (kk[None, :] < K)
        w_mask = (rn[:, None] < N) & (kk[None, :] < K)
        a = tl.load(
            a_ptr + rm[:, None] * stride_am + kk[None, :] * stride_ak, mask=a_mask, other=0.0
        )
        w = tl.load(  # [BLOCK_N, BLOCK_K], K contiguous: the layout wgmma wants for 8-bit B
            w_ptr + rn[:, None] * stride_wn + kk[None, :] * stride_wk, mask=w_mask, other=0.0
        )
        acc = tl.dot(a, tl.trans(w), acc, out_dtype=acc.dtype)
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


@dataclass(frozen=True)
class GemmConfig:
    """Tile shape and pipelining of one ``scaled_gemm`` launch."""

    block_m: int = GEMM_BLOCK[0]
    block_n: int = GEMM_BLOCK[1]
    block_k: int = GEMM_BLOCK[2]
    num_warps: int = 8
    num_stages: int = 3


# Chosen on an H200 (sm90) for BERT's shapes; see docs/gpu-kernels.md. Key: few rows or many.
TUNED: dict[str, GemmConfig] = {
    "small_m": GemmConfig(64, 64, 128, 4, 4),
    "large_m": GemmConfig(128, 128, 128, 8, 4),
}


# What ``autotune`` tries on the GPU (tiles M x N x K, warps, stages)
CANDIDATES: tuple[GemmConfig, ...] = (
    GemmConfig(128, 256, 128, 8, 3),
    GemmConfig(128, 128, 128, 8, 4),
    GemmConfig(128, 128, 128, 4, 4),
    GemmConfig(256, 128, 128, 8, 3),
    GemmConfig(128, 256, 64, 8, 4),
    GemmConfig(128, 64, 128, 4, 4),
    GemmConfig(64, 128, 128, 4, 4),
    GemmConfig(64, 64, 128, 4, 4),
    GemmConfig(64, 64, 256, 4, 3),
)
_AUTOTUNE = {"on": False}
_CHOSEN: dict[tuple[Any, ...], GemmConfig] = {}


def set_autotune(on: bool) -> None:
    """Let ``scaled_gemm`` time ``CANDIDATES`` on the first call of each shape (GPU only).

    Tuning launches many kernels and synchronizes: warm up every shape before capturing a
    CUDA graph (a shape first seen inside a capture would break it).
    """
    _AUTOTUNE["on"] = on


def chosen_configs() -> dict[str, str]:
    """What autotuning picked, readable: ``"M<=m N K dtype epilogue" -> config``."""
    return {" ".join(map(str, k)): str(v) for k, v in _CHOSEN.items()}


def _key(m: int, n: int, k: int, a: torch.Tensor, ep: Epilogue) -> tuple[Any, ...]:
    return (triton.next_power_of_2(m), n, k, str(a.dtype), ep.gelu, ep.requant is not None)


def default_config(m: int, n: int, k: int) -> GemmConfig:
    """The config ``scaled_gemm`` uses when none is given (few rows: small tiles, more programs)."""
    return TUNED["small_m" if m <= 512 else "large_m"]


def _autotuned(a: torch.Tensor, w: torch.Tensor, sa: Any, sw: Any, ep: Epilogue) -> GemmConfig:
    from triton.testing import do_bench

    key = _key(a.shape[0], w.shape[0], a.shape[1], a, ep)
    if key not in _CHOSEN:
        times = {}
        for cfg in CANDIDATES:
            try:
                times[cfg] = do_bench(
                    lambda c=cfg: scaled_gemm(a, w, sa, sw, ep, config=c), warmup=5, rep=20
                )
            except (triton.runtime.errors.OutOfResources, triton.CompilationError):
                continue  # too much shared memory / registers for this chip
        _CHOSEN[key] = min(times, key=times.__getitem__)
    return _CHOSEN[key]


def scaled_gemm(
    a: torch.Tensor,
    w: torch.Tensor,
    a_scale: float | torch.Tensor,
    w_scale: torch.Tensor,
    epilogue: Epilogue | None = None,
    *,
    block: tuple[int, int, int] | None = None,
    config: GemmConfig | None = None,
) -> torch.Tensor:
    """``epilogue(a @ w.T * a_scale * w_scale)``: [M, N] float (``out_dtype``) or quantized.

    ``config`` sets tiles, warps and stages (default: ``default_config``); ``block`` only
    the tiles (the interpreter's tests use small ones). Scales given as float32 device
    tensors create nothing on the host, so the call can be captured in a CUDA graph.
    """
    ep = epilogue or Epilogue()
    _check(a, w, w_scale, ep)
    (m, k), n = a.shape, w.shape[0]
    dev = a.device
    if config is None and _AUTOTUNE["on"] and block is None and a.is_cuda:
        config = _autotuned(a, w, a_scale, w_scale, ep)
    cfg = config or default_config(m, n, k)
    if block is not None:
        cfg = GemmConfig(*block, 8 if block[0] * block[1] >= 128 * 128 else 4, 3)
    sa = scale_tensor(a_scale, dev)
    if ep.requant is not None:
        out = torch.empty((m, n), dtype=quant_dtype(ep.requant), device=dev)
        so = scale_tensor(ep.requant.scale, dev)
    else:
        out = torch.empty((m, n), dtype=ep.out_dtype or torch.float32, device=dev)
        so = sa  # never read without REQUANT
    sw = w_scale if w_scale.dtype == torch.float32 else w_scale.to(torch.float32)
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
    _scaled_gemm_kernel[grid](
        a, w, sa, sw.contiguous(), ep.bias.contiguous() if ep.bias is not None else so, so, out,
        m, n, k, a.stride(0), a.stride(1), w.stride(0), w.stride(1),
        ACC_INT=a.dtype == torch.int8, HAS_BIAS=ep.bias is not None, GELU=ep.gelu,
        REQUANT=ep.requant is not None,
        FMT=ep.requant.fmt_code if ep.requant is not None else 0,
        QMIN=ep.requant.qmin if ep.requant is not None else -128.0,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP=GROUP_M,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip
    return out
