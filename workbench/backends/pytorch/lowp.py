"""FP8 / INT8 Linear layers for CUDA builds, with a float reference path for CPU checks.

``quantize_linears`` swaps every ``nn.Linear`` (but the excluded ones) for a
``QuantLinear``: weights quantized per output channel, activations with a static
scale from the workbench's calibration (INT8: amax/127, FP8 e4m3: amax/448) or,
for ``int8-dynamic``, a per-token scale. The matmul runs on ``torch._scaled_mm``
(FP8) or ``torch._int_mm`` (INT8); everything around it is plain element-wise
torch, so ``torch.compile`` fuses quantization into the producer (LayerNorm,
GELU) and the dequantization into the consumer. Quantized state is stored in
integer dtypes (scales as int32 bit patterns), so a later ``model.to(dtype)``
casts the float parts only. ``simulate=True`` computes exactly the dequantized
result in float64 (the oracle for the kernels).

Example::

    amax = linear_amax_from_table(table, onnx_path)       # lowp_map
    q = quantize_linears(model, amax, "fp8", exclude=["head"])
    q = q.to("cuda", torch.float16)                       # float parts only
    fast = torch.compile(q)
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from typing import Literal, cast

import torch
from torch import nn

from workbench.errors import ConfigError

log = logging.getLogger(__name__)

Precision = Literal["fp8", "int8-static", "int8-dynamic"]
PRECISIONS: tuple[str, ...] = ("fp8", "int8-static", "int8-dynamic")
FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT8_MAX = 127.0
_EPS = 1e-12  # per-token scale floor (all-zero rows)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A float32 tensor stored as its int32 bit pattern (immune to ``Module.to(dtype)``)."""
    return t.detach().to(torch.float32).contiguous().view(torch.int32)


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.float32)


def weight_scales(weight: torch.Tensor, qmax: float) -> torch.Tensor:
    """Per-output-channel symmetric scales ``max|W[n, :]| / qmax`` (1.0 for all-zero rows)."""
    amax = weight.detach().abs().amax(dim=1).to(torch.float32)
    return torch.where(amax > 0, amax / qmax, torch.ones_like(amax))


def quantize_int8(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``clamp(round_half_even(x / scale), -128, 127)`` as int8 (ONNX QuantizeLinear)."""
    return torch.clamp(torch.round(x.to(torch.float32) / scale), -128.0, 127.0).to(torch.int8)


def quantize_fp8(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``x / scale`` saturated to +-448 and rounded to float8_e4m3fn (nearest, ties to even)."""
    q = torch.clamp(x.to(torch.float32) / scale, -FP8_MAX, FP8_MAX)
    return q.to(torch.float8_e4m3fn)


def act_scale(amax: float, precision: str) -> float:
    """Static activation scale from a calibration amax (1.0 when the tensor was all zeros)."""
    qmax = FP8_MAX if precision == "fp8" else INT8_MAX
    return float(amax) / qmax if amax > 0 else 1.0


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


class QuantLinear(nn.Module):
    """A Linear with per-channel quantized weights; FP8 or INT8 (static or per-token) inputs."""

    def __init__(
        self,
        linear: nn.Linear,
        precision: Precision,
        amax: float | None,
        simulate: bool = False,
        per_channel: bool = True,
    ) -> None:
        super().__init__()
        w = linear.weight.detach().to(torch.float32)
        self.precision = precision
        self.simulate = simulate
        self.per_channel = per_channel
        self.fast_accum = False  # FP8: _scaled_mm's faster, lower-precision accumulation
        self.triton_kernels = False  # static FP8/INT8 through workbench's Triton GEMM (issue 25)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        fp8 = precision == "fp8"
        align = 16 if fp8 else 8  # _scaled_mm: K, N % 16; _int_mm: K, N % 8
        if self.in_features % align:
            raise ConfigError(
                f"in_features {self.in_features} is not a multiple of {align}; "
                "exclude this Linear (keep it in float)"
            )
        n_pad = _round_up(self.out_features, align)
        w = torch.cat([w, w.new_zeros(n_pad - self.out_features, self.in_features)])
        s_w = weight_scales(w, FP8_MAX if fp8 else INT8_MAX)
        if not per_channel:  # one scale for the whole weight (FP8: bias fuses into the GEMM)
            s_w = s_w.max().expand_as(s_w).clone()
        if fp8:
            wq = quantize_fp8(w, s_w[:, None]).view(torch.uint8)
        else:
            wq = quantize_int8(w, s_w[:, None])
        self.register_buffer("weight_q", wq)  # [N_pad, K]
        self.register_buffer("w_scale", _bits(s_w))  # [N_pad]
        s_a = act_scale(amax, precision) if amax is not None else 1.0
        self.register_buffer("a_scale", _bits(torch.tensor(s_a, device=w.device)))
        # FP8: _scaled_mm applies s_a * max(s_w); the ratio s_w / max(s_w) <= 1 comes after
        self.register_buffer("w_scale_max", _bits(s_w.max()))
        self.register_buffer("w_ratio", _bits((s_w / s_w.max())[None, :]))
        self.register_buffer("out_scale", _bits((s_a * s_w)[None, :]))  # INT8 static epilogue
        bias = w.new_zeros(n_pad)
        if linear.bias is not None:
            bias[: self.out_features] = linear.bias.detach().float()
        self.register_buffer("bias", bias.to(linear.weight.dtype))

    def extra_repr(self) -> str:
        mode = "simulate" if self.simulate else "kernel"
        return f"{self.in_features}, {self.out_features}, precision={self.precision}, {mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.simulate:
            y = self._reference(x2)
        elif self.triton_kernels:
            y = self._triton(x2)
        elif self.precision == "fp8":
            y = self._fp8(x2)
        else:
            y = self._int8(x2)
        return y[:, : self.out_features].reshape(*lead, self.out_features)

    # ----------------------------------------------------------- the two pieces
    def quantize_input(self, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The quantized [M, K] input and its scale (0-dim static, or [M, 1] per token)."""
        if self.precision == "fp8":
            s = _f32(self.a_scale)
            return quantize_fp8(x2, s), s
        if self.precision == "int8-static":
            s = _f32(self.a_scale)
            return quantize_int8(x2, s), s
        amax = x2.detach().abs().amax(dim=1, keepdim=True).to(torch.float32)
        s = torch.clamp(amax, min=_EPS) / INT8_MAX
        return quantize_int8(x2, s), s

    def dequantized_weight(self) -> torch.Tensor:
        """The weight the kernel really multiplies by, in float64 ([N_pad, K])."""
        wq = self.weight_q.view(torch.float8_e4m3fn) if self.precision == "fp8" else self.weight_q
        return wq.to(torch.float64) * _f32(self.w_scale).to(torch.float64)[:, None]

    # ------------------------------------------------------------------ paths
    def _reference(self, x2: torch.Tensor) -> torch.Tensor:
        xq, s = self.quantize_input(x2)
        x_dq = xq.to(torch.float64) * s.to(torch.float64)
        y = x_dq @ self.dequantized_weight().t() + self.bias.to(torch.float64)
        return y.to(x2.dtype)

    def _fp8(self, x2: torch.Tensor) -> torch.Tensor:
        xq, s = self.quantize_input(x2)
        y = torch._scaled_mm(
            xq,
            self.weight_q.view(torch.float8_e4m3fn).t(),
            scale_a=s,
            scale_b=_f32(self.w_scale_max),
            bias=None if self.per_channel else self.bias.to(x2.dtype),
            out_dtype=x2.dtype,
            use_fast_accum=self.fast_accum,
        )
        if not self.per_channel:
            return y
        return (y * _f32(self.w_ratio) + self.bias).to(x2.dtype)

    def _triton(self, x2: torch.Tensor) -> torch.Tensor:
        """Quantize, then the Triton GEMM with its dequant + bias epilogue (static scales)."""
        from workbench.backends.pytorch.kernels import Epilogue, QuantSpec, quantize, scaled_gemm

        if self.precision == "int8-dynamic":
            raise ConfigError("the Triton kernels take static scales; use int8-static or fp8")
        fmt: Literal["int8", "fp8"] = "fp8" if self.precision == "fp8" else "int8"
        s = _f32(self.a_scale)
        w = self.weight_q.view(torch.float8_e4m3fn) if fmt == "fp8" else self.weight_q
        ep = Epilogue(bias=self.bias, out_dtype=x2.dtype)
        return scaled_gemm(quantize(x2, QuantSpec(fmt, s)), w, s, _f32(self.w_scale), ep)

    def _int8(self, x2: torch.Tensor) -> torch.Tensor:
        xq, s = self.quantize_input(x2)
        m = xq.shape[0]
        if m <= 16:  # cuBLAS int8 needs M > 16: pad rows with zeros
            xq = torch.cat([xq, xq.new_zeros(17 - m, xq.shape[1])])
            acc = torch._int_mm(xq, self.weight_q.t())[:m]
        else:  # no slice between _int_mm and the multiply: Inductor may fuse the two
            acc = torch._int_mm(xq, self.weight_q.t())
        if self.precision == "int8-static":
            y = acc * _f32(self.out_scale)  # matches Inductor's fused int_mm * scale pattern
        else:
            y = (acc * s) * _f32(self.w_scale)[None, :]
        return (y + self.bias).to(x2.dtype)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        import difflib

        close = difflib.get_close_matches(precision, PRECISIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"low precision {precision!r} unknown{hint}; use one of {PRECISIONS}")


def linear_paths(model: nn.Module, exclude: Sequence[str] = ()) -> list[str]:
    """Module paths of the ``nn.Linear`` layers of ``model`` not matched by ``exclude``."""
    return [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    ]


def quantize_linears(
    model: nn.Module,
    act_amax: Mapping[str, float],
    precision: Precision,
    exclude: Sequence[str] = (),
    *,
    simulate: bool = False,
    per_channel: bool = True,
) -> nn.Module:
    """Replace ``model``'s Linears (in place) by ``QuantLinear``; returns ``model``.

    ``act_amax`` maps module paths to the amax of that Linear's input (not needed for
    ``int8-dynamic``); ``exclude`` holds fnmatch patterns of module paths kept float;
    ``per_channel=False`` uses one weight scale per Linear (as the Q/DQ path's default).

    Example::

        quantize_linears(model, {"encoder.encoder.layer.0.attention.self.query": 3.2, ...},
                         "int8-static", exclude=["head", "*.layer.11.*"])
    """
    _check_precision(precision)
    paths = linear_paths(model, exclude)
    if not paths:
        raise ConfigError("no nn.Linear left to quantize; check the exclude patterns")
    if precision != "int8-dynamic":
        missing = [p for p in paths if p not in act_amax]
        if missing:
            raise ConfigError(
                f"no calibration amax for {len(missing)} Linear(s), e.g. {missing[0]!r}; map the "
                "table with linear_amax_from_table() of this model's export, or exclude them "
                "(quantize_from_table keeps Linears the export never runs in float)"
            )
        bad = [p for p in paths if not (act_amax[p] >= 0 and act_amax[p] < float("inf"))]
        if bad:
            raise ConfigError(f"amax of {bad[0]!r} is {act_amax[bad[0]]}; recalibrate")
    for path in paths:
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        linear = cast(nn.Linear, getattr(parent, attr))
        amax = act_amax.get(path) if precision != "int8-dynamic" else None
        setattr(parent, attr, QuantLinear(linear, precision, amax, simulate, per_channel))
    log.info(
        "%s: %d Linear layers quantized, %d kept float",
        precision,
        len(paths),
        len(linear_paths(model)),
    )
    return model


def set_simulate(model: nn.Module, simulate: bool) -> nn.Module:
    """Switch every ``QuantLinear`` of ``model`` between kernels and the float64 reference."""
    for mod in model.modules():
        if isinstance(mod, QuantLinear):
            mod.simulate = simulate
    return model
