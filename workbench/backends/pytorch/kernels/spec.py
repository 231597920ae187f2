"""What a kernel's output should be: the quantized format and the fused GEMM epilogue.

Plain frozen dataclasses with no torch or triton import, so callers can build them
anywhere. Scales follow the workbench's calibration: INT8 ``amax / 127``, FP8 e4m3
``amax / 448`` (``lowp.act_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from workbench.errors import ConfigError

QuantFormat = Literal["int8", "fp8"]


@dataclass(frozen=True)
class QuantSpec:
    """A static per-tensor quantized output: ``q = sat(round_half_even(y / scale))``.

    ``scale`` is a float or a one-element float32 tensor on the kernel's device (no host
    sync). INT8 saturates to [-128, 127] like ONNX QuantizeLinear and
    ``lowp.quantize_int8``; ``symmetric=True`` uses [-127, 127] (the weights' range).
    FP8 e4m3 saturates to +-448 and rounds ties to even.
    """

    fmt: QuantFormat
    scale: Any
    symmetric: bool = False

    def __post_init__(self) -> None:
        if self.fmt not in ("int8", "fp8"):
            raise ConfigError(f"quantized format {self.fmt!r} unknown; use 'int8' or 'fp8'")
        if isinstance(self.scale, int | float) and not 0 < self.scale < float("inf"):
            raise ConfigError(f"quantization scale {self.scale} must be finite and > 0")

    @property
    def qmin(self) -> float:
        """The lowest INT8 code the output may take."""
        return -127.0 if self.symmetric else -128.0

    @property
    def fmt_code(self) -> int:
        """The kernels' constexpr for the format (0 INT8, 1 FP8)."""
        return 0 if self.fmt == "int8" else 1


@dataclass(frozen=True, eq=False)
class Epilogue:
    """What a quantized GEMM does to its accumulator before writing it.

    ``y = acc * (a_scale * w_scale[n]) + bias[n]``, then GELU (erf) if ``gelu``; written
    as ``requant`` (INT8/FP8, for a consumer that is another quantized GEMM) or else as
    ``out_dtype`` (a torch float dtype; None: float32).
    """

    bias: Any = None
    gelu: bool = False
    requant: QuantSpec | None = None
    out_dtype: Any = None
