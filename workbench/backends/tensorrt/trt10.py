"""Builder settings that exist only in TensorRT 10.x (removed in 11): precision flags, calibrator.

Kept in their own module so the static API-name test can hold them to the 10.x bindings
and everything else to both 10.x and 11.x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def apply_fp16_flag(trt: Any, config: Any) -> None:
    """Allow FP16 kernels in a weakly typed network (``BuilderFlag.FP16``, deprecated in 10.12)."""
    config.set_flag(trt.BuilderFlag.FP16)


def configure_implicit_int8(
    trt: Any,
    builder: Any,
    config: Any,
    calibrator: Any,
    input_names: Sequence[str],
    shape: tuple[int, int],
    fp16_fallback: bool,
) -> None:
    """INT8 flag, the calibrator, and a fixed calibration profile of ``shape`` for every input.

    With dynamic shapes TensorRT calibrates at the calibration profile's dimensions, so
    every batch the calibrator serves has exactly this shape (see ``fixed_shape_batches``).
    """
    config.set_flag(trt.BuilderFlag.INT8)
    if fp16_fallback:
        config.set_flag(trt.BuilderFlag.FP16)
    config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()
    for name in input_names:
        profile.set_shape(name, shape, shape, shape)
    config.set_calibration_profile(profile)
