"""TensorRT backend: engines at FP32 / FP16 / INT8 (implicit calibrator on 10.x, explicit Q/DQ).

Nothing here imports ``tensorrt`` at import time; ``build_runner`` raises
BackendUnavailableError (CLI exit 3) when TensorRT is absent. What has run where is in
docs/tensorrt.md: the TensorRT-free parts are tested on every machine; the TensorRT paths
are written against the documented 10.x/11.x Python API and checked by name only.

Example::

    from workbench.backends.tensorrt import build_runner
    with build_runner("model.onnx", "int8-explicit", calibration=table) as runner:
        logits = runner.infer(feed)["logits"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.backends.tensorrt._trt import availability, import_tensorrt
from workbench.backends.tensorrt.precision import PRECISIONS, EngineSpec, plan_precision
from workbench.backends.tensorrt.profiles import ShapeProfile, calibration_shape, derive_profile
from workbench.backends.tensorrt.strategies import ExplicitQDQ, ImplicitCalibration
from workbench.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "EngineSpec",
    "ExplicitQDQ",
    "ImplicitCalibration",
    "ShapeProfile",
    "availability",
    "build_runner",
    "calibration_shape",
    "derive_profile",
    "plan_precision",
    "resolve_calibration",
]


def resolve_calibration(
    precision: str, calibration: Any
) -> ImplicitCalibration | ExplicitQDQ | None:
    """Turn what a caller has into a strategy for ``precision``.

    int8-explicit accepts an ``ExplicitQDQ``, a Q/DQ ``.onnx`` path, a TensorRT calibration
    cache path (read through ``workbench.calibration.trt_cache``) or a ``CalibrationTable``;
    int8-implicit needs an ``ImplicitCalibration``; fp32/fp16 take none.
    """
    if precision in ("fp32", "fp16"):
        if calibration is not None:
            raise ConfigError(f"precision {precision} takes no calibration")
        return None
    if precision == "int8-implicit":
        if not isinstance(calibration, ImplicitCalibration):
            raise ConfigError(
                "int8-implicit needs calibration=ImplicitCalibration(feeds, shape=(batch, seq))"
            )
        return calibration
    if isinstance(calibration, ExplicitQDQ):
        return calibration
    if isinstance(calibration, str | Path):
        path = Path(calibration)
        if path.suffix == ".onnx":
            return ExplicitQDQ(qdq_onnx=path)
        from workbench.calibration.trt_cache import read_trt_cache

        return ExplicitQDQ(table=read_trt_cache(path))
    if calibration is None:
        raise ConfigError(
            "int8-explicit needs a calibration table, a TensorRT calibration cache or a Q/DQ model"
        )
    return ExplicitQDQ(table=calibration)


def build_runner(
    onnx_path: str | Path,
    precision: str,
    calibration: Any = None,
    profile: ShapeProfile | None = None,
    *,
    max_length: int = 128,
    opt_batch: int = 32,
    max_batch: int = 64,
    contexts: int = 1,
    name: str | None = None,
    **spec_options: Any,
) -> Any:
    """Build (or load cached) a TensorRT engine for ``precision`` and return its ``TensorRTRunner``.

    ``precision`` is one of fp32, fp16, int8-implicit (TensorRT 10 only), int8-explicit.
    Without ``profile``, the profile spans batch 1..max_batch and sequence 1..max_length,
    tuned for (opt_batch, max_length); pass ``derive_profile(lengths, ...)`` to tune it to
    real token lengths. ``spec_options`` go to ``EngineSpec`` (workspace_mb, ...).

    Example::

        runner = build_runner(info.onnx_path, "fp16", profile=derive_profile(
            tok.lengths(texts), max_length=128, opt_batch=32, max_batch=64))
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown TensorRT precision {precision!r}; choose one of {PRECISIONS}")
    import_tensorrt()  # BackendUnavailableError("TensorRT not installed: ...") before any work
    from workbench.backends.tensorrt.builder import build_engine
    from workbench.backends.tensorrt.runner import TensorRTRunner

    strategy = resolve_calibration(precision, calibration)
    if profile is None:
        profile = ShapeProfile((1, 1), (opt_batch, max_length), (max_batch, max_length))
    if isinstance(strategy, ImplicitCalibration):
        spec_options.setdefault("calibration_shape", strategy.shape)
    spec = EngineSpec(precision, profile, **spec_options)
    built = build_engine(onnx_path, spec, calibration=strategy)
    return TensorRTRunner(
        built.engine_path, name=name or f"trt-{precision}", precision=precision, contexts=contexts
    )
