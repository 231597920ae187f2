"""TensorRT in the backend registry: FP32, FP16, INT8 explicit (Q/DQ) and implicit (TensorRT 10).

Never faked: where TensorRT is absent, ``unavailable_reason`` says so (with the install
hint) and the engine skips or stops with exit 3 before any work.
"""

from __future__ import annotations

from pathlib import Path

from workbench.backends.base import Runner
from workbench.backends.registry import Artifact, BuildRequest, CalibrationFeeds, Capabilities
from workbench.errors import BackendUnavailableError
from workbench.fileio import sha256_file
from workbench.results.records import Int8Coverage

DETAILS = {
    "fp32": "TensorRT FP32 engine (strongly typed, TF32 off; Polygraphy build)",
    "fp16": "TensorRT FP16 engine from an FP16 ONNX copy (strongly typed; Polygraphy build)",
    "int8-explicit": "TensorRT INT8 engine from the workbench's Q/DQ model (strongly typed)",
    "int8-implicit": "TensorRT INT8 engine, TensorRT's own IInt8EntropyCalibrator2 (10.x)",
}


class TensorRTBackend:
    """Engines built from the verified FP32 ONNX model (and the workbench's calibration)."""

    name = "tensorrt"

    @property
    def capabilities(self) -> Capabilities:
        """CUDA only; per precision, ``build.PLANS`` says what TensorRT needs to build it."""
        from workbench.backends.tensorrt.build import PRECISIONS

        return Capabilities(short_name="trt", precisions={"cuda": PRECISIONS})

    def unavailable_reason(self, device: str) -> str | None:
        from workbench.backends.tensorrt._trt import import_tensorrt

        try:
            import_tensorrt()
        except BackendUnavailableError as exc:
            return str(exc)
        return None

    def build(self, req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
        from workbench.backends.tensorrt.build import build_engine

        path = build_engine(req, calibration)
        return Artifact(str(path), sha256_file(path), DETAILS[req.precision])

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        from workbench.backends.tensorrt.runner import TensorRTRunner

        return TensorRTRunner(artifact.model_path, name=req.name, precision=req.precision)

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        """From the engine inspector's JSON stored beside the engine at build time."""
        from workbench.backends.tensorrt.audit import coverage_from_inspector
        from workbench.backends.tensorrt.build import LAYERS_FILE, PLANS

        if not PLANS[req.precision].int8:
            return None
        layers = Path(artifact.model_path).with_name(LAYERS_FILE)
        return coverage_from_inspector(layers.read_text(encoding="utf-8"))


BACKEND = TensorRTBackend()
