"""TensorRT in the backend registry: FP32, FP16, INT8 implicit (TRT 10) and explicit Q/DQ engines.

Never faked: where TensorRT is absent, ``unavailable_reason`` says so and the engine
skips or stops (exit 3) before any work. The calls below follow the documented 10/11 API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.backends.base import Runner
from workbench.backends.registry import Artifact, BuildRequest, CalibrationFeeds
from workbench.errors import BackendUnavailableError, CalibrationError
from workbench.fileio import sha256_file
from workbench.results.records import Int8Coverage


class TensorRTBackend:
    """Engines built from the verified FP32 ONNX model (and the workbench's calibration table)."""

    name = "tensorrt"

    def precisions(self, device: str) -> tuple[str, ...]:
        from workbench.backends.tensorrt.precision import PRECISIONS

        return PRECISIONS if device == "cuda" else ()

    def unavailable_reason(self, device: str) -> str | None:
        from workbench.backends.tensorrt._trt import import_tensorrt

        try:
            import_tensorrt()
        except BackendUnavailableError as exc:
            return str(exc)
        return None

    def build(self, req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
        from workbench.backends.tensorrt import resolve_calibration
        from workbench.backends.tensorrt.builder import build_engine
        from workbench.backends.tensorrt.precision import EngineSpec
        from workbench.backends.tensorrt.profiles import ShapeProfile
        from workbench.backends.tensorrt.strategies import ImplicitCalibration

        source: Any = None
        if req.precision == "int8-explicit":
            if not req.table_file:
                raise CalibrationError(f"{req.name}: int8-explicit needs a calibration table")
            from workbench.calibration.table import CalibrationTable

            source = CalibrationTable.load(req.table_file)
        elif req.precision == "int8-implicit":
            if calibration is None:
                raise CalibrationError(f"{req.name}: int8-implicit needs calibration samples")
            feeds = list(calibration())
            source = ImplicitCalibration(feeds, shape=tuple(feeds[0]["input_ids"].shape))
        strategy = resolve_calibration(req.precision, source)
        n = req.max_length
        profile = ShapeProfile((1, 1), (32, n), (64, n))
        built = build_engine(req.fp32_onnx, EngineSpec(req.precision, profile), strategy)
        path = Path(built.engine_path)
        return Artifact(str(path), sha256_file(path), f"TensorRT {req.precision} engine")

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        from workbench.backends.tensorrt.runner import TensorRTRunner

        return TensorRTRunner(artifact.model_path, name=req.name, precision=req.precision)

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        return None  # the engine inspector audit runs inside TensorRTRunner where TRT exists


BACKEND = TensorRTBackend()
