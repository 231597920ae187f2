"""Which TensorRT mechanism gives each precision on each major version (pure, tested).

TensorRT 10 deprecated implicit-INT8 calibrators (10.1) and the precision builder flags
(10.12); TensorRT 11 removed both: every network is strongly typed and precision comes
from the model itself (Q/DQ nodes, FP16 casts). This module is the single table of that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workbench.backends.tensorrt.profiles import ShapeProfile
from workbench.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8-implicit", "int8-explicit")


@dataclass(frozen=True)
class PrecisionPlan:
    """How to build one precision on one TensorRT major version."""

    precision: str
    trt_major: int
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    fp16_flag: bool  # BuilderFlag.FP16 (TensorRT 10 only)
    uses_calibrator: bool  # BuilderFlag.INT8 + IInt8EntropyCalibrator2 (TensorRT 10 only)
    onnx_transform: str  # "none" | "fp16-cast" | "qdq"
    clear_tf32: bool  # FP32 builds must not silently use TF32 matmuls
    note: str


def plan_precision(precision: str, trt_major: int, fp16_fallback: bool = False) -> PrecisionPlan:
    """The build plan for ``precision`` on TensorRT ``trt_major``; ConfigError if impossible.

    ``fp16_fallback`` (int8-implicit only) lets layers TensorRT keeps out of INT8 run in FP16
    instead of FP32, like ``trtexec --int8 --fp16``.

    Example::

        plan_precision("int8-explicit", 11).onnx_transform  # "qdq"
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown TensorRT precision {precision!r}; choose one of {PRECISIONS}")
    if trt_major < 10:
        raise ConfigError(
            f"TensorRT {trt_major}.x is not supported (no tensor-name I/O); install TensorRT >= 10"
        )
    new = trt_major >= 11
    if precision == "fp32":
        note = "strongly typed FP32 (TF32 off)"
        return PrecisionPlan(precision, trt_major, True, False, False, "none", True, note)
    if precision == "fp16":
        if new:
            note = "strongly typed; ONNX weights/activations cast to FP16 (I/O kept FP32)"
            return PrecisionPlan(precision, trt_major, True, False, False, "fp16-cast", False, note)
        note = "BuilderFlag.FP16 (weakly typed)"
        return PrecisionPlan(precision, trt_major, False, True, False, "none", False, note)
    if precision == "int8-implicit":
        if new:
            raise ConfigError(
                f"TensorRT {trt_major} removed implicit INT8 calibration "
                "(IInt8EntropyCalibrator2); "
                "use precision 'int8-explicit', which builds from the workbench's Q/DQ model"
            )
        note = "IInt8EntropyCalibrator2 (deprecated since 10.1); non-INT8 layers in " + (
            "FP16" if fp16_fallback else "FP32"
        )
        return PrecisionPlan(precision, trt_major, False, fp16_fallback, True, "none", False, note)
    return PrecisionPlan(
        precision, trt_major, True, False, False, "qdq", False, "strongly typed Q/DQ model"
    )


@dataclass(frozen=True)
class EngineSpec:
    """Everything the user chooses about an engine build (part of the engine cache key).

    Example::

        EngineSpec("fp16", derive_profile(lengths, max_length=128, opt_batch=32, max_batch=64))
    """

    precision: str
    profile: ShapeProfile
    workspace_mb: int = 4096
    optimization_level: int = 3
    fp16_fallback: bool = False
    calibration_shape: tuple[int, int] | None = None  # int8-implicit: (batch, seq) fed

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown TensorRT precision {self.precision!r}; choose one of {PRECISIONS}"
            )
        if self.workspace_mb < 64:
            raise ConfigError(f"workspace_mb {self.workspace_mb} is too small; use >= 64")
        if not 0 <= self.optimization_level <= 5:
            raise ConfigError(
                f"optimization_level must be 0..5 (TensorRT's builder_optimization_level), "
                f"got {self.optimization_level}"
            )
        if self.precision == "int8-implicit" and self.calibration_shape is None:
            raise ConfigError(
                "int8-implicit needs calibration_shape=(batch, seq); derive it with "
                "profiles.calibration_shape(lengths, max_length=..., batch=...)"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for cache keys and records."""
        d = asdict(self)
        d["profile"] = self.profile.as_dict()
        d["calibration_shape"] = list(self.calibration_shape) if self.calibration_shape else None
        return d
