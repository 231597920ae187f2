"""Build (or reuse) a TensorRT engine with Polygraphy's loaders.

``NetworkFromOnnxPath`` -> ``CreateConfig`` (profiles; INT8 + ``Calibrator`` for TensorRT
10's implicit path) -> ``EngineBytesFromNetwork``. Ours are the model TensorRT parses
(FP32 as exported, an FP16 copy, or the workbench's Q/DQ model), the calibration feeding,
and the content-addressed cache entry: ``engine.plan``, the inspector's ``layers.json``
(read by the INT8 audit) and, for int8-implicit, TensorRT's ``calibration.cache`` with the
same ranges as a workbench table (``tensorrt-ranges.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np

from workbench.backends.registry import BuildRequest, CalibrationFeeds
from workbench.backends.tensorrt._trt import (
    gpu_tag,
    import_tensorrt,
    major_version,
    polygraphy_errors,
)
from workbench.backends.tensorrt.feeding import CalibrationLoader, make_calibrator, model_inputs
from workbench.backends.tensorrt.profiles import ShapeProfile, polygraphy_profile
from workbench.errors import CalibrationError, ConfigError, EngineBuildError, ModelError
from workbench.fileio import build_entry, reuse_entry, sha256_file, sha256_json

log = logging.getLogger(__name__)

ENGINE_VERSION = 1  # bump when what goes into an entry changes
ENGINE_FILE, LAYERS_FILE = "engine.plan", "layers.json"
CACHE_FILE, RANGES_FILE = "calibration.cache", "tensorrt-ranges.json"


@dataclass(frozen=True)
class Plan:
    """How TensorRT builds one precision, as data the build, the registry entry and doctor read."""

    source: str  # the model parsed: "fp32" (as exported) | "fp16" (FP16 copy) | "qdq" (Q/DQ)
    strongly_typed: bool  # precision from the model; weakly typed only for the calibrator
    needs: str  # "" | "table" (workbench calibration table) | "samples" (TensorRT calibrates)
    trt_majors: tuple[int, ...]  # TensorRT major versions that build it
    int8: bool  # has INT8 layers for the audit to count

    @property
    def calibrator(self) -> bool:
        """TensorRT 10's IInt8EntropyCalibrator2 (removed in 11) makes the ranges."""
        return self.needs == "samples"


PLANS = {
    "fp32": Plan("fp32", strongly_typed=True, needs="", trt_majors=(10, 11), int8=False),
    "fp16": Plan("fp16", strongly_typed=True, needs="", trt_majors=(10, 11), int8=False),
    "int8-implicit": Plan(
        "fp32", strongly_typed=False, needs="samples", trt_majors=(10,), int8=True
    ),
    "int8-explicit": Plan(
        "qdq", strongly_typed=True, needs="table", trt_majors=(10, 11), int8=True
    ),
}
PRECISIONS = tuple(PLANS)


def precisions_on(trt_major: int) -> tuple[str, ...]:
    """The precisions TensorRT ``trt_major`` builds (``int8-implicit`` only on 10.x)."""
    return tuple(p for p, plan in PLANS.items() if trt_major in plan.trt_majors)


def plan_for(precision: str, trt_major: int) -> Plan:
    """The build plan for ``precision`` on TensorRT ``trt_major``; ConfigError if impossible.

    Example::

        plan_for("int8-explicit", 11).source  # "qdq"
    """
    if precision not in PLANS:
        raise ConfigError(f"unknown TensorRT precision {precision!r}; choose one of {PRECISIONS}")
    if trt_major < 10:
        raise ConfigError(f"TensorRT {trt_major}.x is not supported; install TensorRT >= 10")
    if precision not in precisions_on(trt_major):
        raise ConfigError(
            f"TensorRT {trt_major} removed implicit INT8 calibration (IInt8EntropyCalibrator2); "
            "use precision 'int8-explicit' (the workbench's Q/DQ model)"
        )
    return PLANS[precision]


def build_engine(req: BuildRequest, calibration: CalibrationFeeds | None) -> Path:
    """The engine file for ``req``: reused when an intact entry with the same key exists.

    The key holds everything the engine depends on: the ONNX bytes, precision, profile,
    the ranges (table or calibration batches), the TensorRT and Polygraphy versions and
    the GPU's compute capability (engines do not load across TensorRT versions or GPUs).
    """
    onnx = Path(req.fp32_onnx)
    if not onnx.is_file():
        raise ModelError(f"ONNX model {onnx} does not exist; export it first")
    trt = import_tensorrt()
    plan = plan_for(req.precision, major_version(trt))
    inputs = model_inputs(onnx)
    profile = ShapeProfile.for_length(req.max_length)
    loader, ranges = None, dict[str, object]()
    if plan.needs == "samples":
        if calibration is None:
            raise CalibrationError(f"{req.name}: {req.precision} needs calibration samples")
        loader = CalibrationLoader(calibration, inputs)
        ranges = {"batches": loader.sha256()}
    elif plan.needs == "table":
        if not req.table_file:
            raise CalibrationError(f"{req.name}: {req.precision} needs a calibration table")
        from workbench.calibration.table import CalibrationTable

        table = CalibrationTable.load(req.table_file)
        ranges = {"amax": table.amax, "per_channel": req.per_channel, "exclude": req.exclude}
    key = sha256_json(
        {
            "onnx": sha256_file(onnx),
            "precision": req.precision,
            "profile": profile.as_dict(),
            "ranges": ranges,
            "trt": str(trt.__version__),
            "polygraphy": metadata.version("polygraphy"),  # its config defaults shape the engine
            "gpu": gpu_tag(),
            "v": ENGINE_VERSION,
        }
    )[:20]
    out = Path(req.cache_dir) / "tensorrt" / key / ENGINE_FILE
    if not reuse_entry(out.parent, f"TensorRT {req.precision} engine"):
        build_entry(out, lambda tmp: _build_into(trt, tmp, req, plan, inputs, profile, loader))
    return out


def _build_into(
    trt: ModuleType,
    engine_file: Path,
    req: BuildRequest,
    plan: Plan,
    inputs: dict[str, np.dtype],
    profile: ShapeProfile,
    loader: CalibrationLoader | None,
) -> None:
    """Write the engine and its side files into the (private) entry folder."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    work = engine_file.parent
    model = _model_to_parse(req, plan, work)
    profiles = [polygraphy_profile(profile, list(inputs))]
    calibrator = None
    if loader is not None:  # the last profile is the calibration profile (Polygraphy)
        profiles.append(polygraphy_profile(ShapeProfile.fixed(loader.shape), list(inputs)))
        calibrator = make_calibrator(trt, loader, work / CACHE_FILE)
    config = CreateConfig(int8=loader is not None, calibrator=calibrator, profiles=profiles)
    network = NetworkFromOnnxPath(str(model), strongly_typed=plan.strongly_typed)
    with polygraphy_errors(EngineBuildError, f"TensorRT could not build {req.name}"):
        serialized = EngineBytesFromNetwork(network, config=config)()
    data = bytes(memoryview(serialized))
    if loader is not None and calibrator is not None:
        loader.check_served(calibrator.num_batches)
        from workbench.calibration.trt_cache import read_trt_cache

        read_trt_cache(work / CACHE_FILE).save(work / RANGES_FILE)
    engine_file.write_bytes(data)
    (work / LAYERS_FILE).write_text(_inspect(trt, data, list(inputs), profile), encoding="utf-8")
    if model != Path(req.fp32_onnx):
        model.unlink()  # the engine is what is kept
    log.info("built TensorRT %s engine %s", req.precision, engine_file)


def _model_to_parse(req: BuildRequest, plan: Plan, work: Path) -> Path:
    """The ONNX file TensorRT parses for ``plan`` (written into ``work`` when derived)."""
    if plan.source == "fp16":
        from workbench.backends.tensorrt.onnx_prep import fp16_cast_model

        return fp16_cast_model(req.fp32_onnx, work / "model.fp16.onnx")
    if plan.source == "qdq":
        from workbench.calibration.qdq import write_qdq_model
        from workbench.calibration.table import CalibrationTable

        out = work / "model.qdq.onnx"
        table = CalibrationTable.load(req.table_file)
        if table.source == "tensorrt-cache":  # e.g. an implicit build's tensorrt-ranges.json
            from workbench.calibration.trt_cache import check_cache_coverage

            check_cache_coverage(table, req.fp32_onnx, req.table_file)
        write_qdq_model(req.fp32_onnx, table, out, per_channel=req.per_channel, exclude=req.exclude)
        return out
    return Path(req.fp32_onnx)


def _inspect(trt: ModuleType, data: bytes, input_names: list[str], profile: ShapeProfile) -> str:
    """The engine inspector's JSON at the profile's opt shape (for the INT8 audit)."""
    from polygraphy.backend.trt import EngineFromBytes

    from workbench.backends.tensorrt.audit import inspect_engine

    with polygraphy_errors(EngineBuildError, "TensorRT cannot load the engine it just built"):
        engine = EngineFromBytes(data)()
    return inspect_engine(trt, engine, input_names, profile.opt)
