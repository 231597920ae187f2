"""Triton device functions shared by the kernels: rounding, saturation, GELU.

Written so that the GPU and Triton's CPU interpreter give the same bits: rounding is
done by hand (round half to even, as ``torch.round``) instead of through ``libdevice``
(which the interpreter lacks), and FP8 values are rounded onto the e4m3 grid before the
cast (the interpreter's float→fp8 cast rounds ties away from zero and wraps past 448,
while the GPU's ``cvt.rn.satfinite`` rounds ties to even and saturates).
"""

from __future__ import annotations

import triton
import triton.language as tl

FP8_MAX: tl.constexpr = tl.constexpr(448.0)
INV_SQRT2: tl.constexpr = tl.constexpr(0.7071067811865476)


@triton.jit
def round_half_even(x):
    """Nearest integer of fp32 ``x``, ties to even (``x - floor(x)`` is exact in fp32)."""
    f = tl.floor(x)
    d = x - f
    odd = f - 2.0 * tl.floor(f * 0.5)  # 1.0 where f is odd, else 0.0
    return tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, f + odd))


@triton.jit
def to_int8(y, scale, QMIN: tl.constexpr):
    """``clamp(round_half_even(y / scale), QMIN, 127)`` as int8 (IEEE division, as torch)."""
    q = round_half_even(tl.math.div_rn(y, scale))
    return tl.minimum(tl.maximum(q, QMIN), 127.0).to(tl.int8)


@triton.jit
def to_e4m3(y, scale):
    """``y / scale`` saturated to +-448, rounded to the e4m3 grid (ties to even), as fp8."""
    v = tl.minimum(tl.maximum(tl.math.div_rn(y, scale), -FP8_MAX), FP8_MAX)
    bits = v.to(tl.int32, bitcast=True)
    e = tl.maximum(((bits >> 23) & 0xFF) - 127, -6)  # binade; e4m3 subnormals below 2**-6
    up = ((130 - e) << 23).to(tl.float32, bitcast=True)  # 2**(3 - e): 3 mantissa bits
    down = ((124 + e) << 23).to(tl.float32, bitcast=True)  # 2**(e - 3)
    r = round_half_even(v * up) * down  # exact scalings by powers of two
    return r.to(tl.float8e4nv)


@triton.jit
def quantize_to(y, scale, FMT: tl.constexpr, QMIN: tl.constexpr):
    """Quantize fp32 ``y`` to INT8 (``FMT == 0``) or FP8 e4m3 (``FMT == 1``)."""
    if FMT == 0:
        return to_int8(y, scale, QMIN)
    else:
        return to_e4m3(y, scale)


@triton.jit
def gelu_erf(x):
    """GELU in its exact erf form (BERT's ``gelu``): ``0.5 x (1 + erf(x / sqrt(2)))``."""
    return 0.5 * x * (1.0 + tl.math.erf(x * INV_SQRT2))
