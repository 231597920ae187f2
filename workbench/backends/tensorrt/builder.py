"""Build (or load from the engine cache) a TensorRT engine from an ONNX model.

Layering follows Polygraphy's loaders: parse ONNX into a network, make a builder config
(precision per ``precision.plan_precision``, optimization profile, timing cache), build a
serialized engine, then audit it with the engine inspector. TensorRT is imported lazily.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.backends.tensorrt._trt import import_tensorrt, major_version, make_logger
from workbench.backends.tensorrt.audit import Int8Audit, inspect_engine, parse_engine_information
from workbench.backends.tensorrt.buffers import MemoryApi
from workbench.backends.tensorrt.cache import EngineCache, EngineKey, timing_cache_path
from workbench.backends.tensorrt.precision import EngineSpec, PrecisionPlan, plan_precision
from workbench.backends.tensorrt.strategies import ExplicitQDQ, ImplicitCalibration
from workbench.errors import ConfigError, EngineBuildError, ModelError
from workbench.fileio import atomic_write_bytes, atomic_write_json, cache_root, sha256_file

log = logging.getLogger(__name__)

Calibration = ImplicitCalibration | ExplicitQDQ | None


@dataclass(frozen=True)
class BuiltEngine:
    """A serialized engine on disk and how it was made."""

    engine_path: Path
    key: EngineKey
    plan: PrecisionPlan
    build_onnx: Path  # the model TensorRT parsed (FP16-cast / Q/DQ / original)
    from_cache: bool
    build_seconds: float
    audit: Int8Audit | None
    layer_info_path: Path | None


def _check_calibration(spec: EngineSpec, calibration: Calibration) -> None:
    if spec.precision == "int8-implicit" and not isinstance(calibration, ImplicitCalibration):
        raise ConfigError("int8-implicit needs calibration=ImplicitCalibration(...)")
    if spec.precision == "int8-explicit" and not isinstance(calibration, ExplicitQDQ):
        raise ConfigError("int8-explicit needs calibration=ExplicitQDQ(table=... or qdq_onnx=...)")
    if spec.precision in ("fp32", "fp16") and calibration is not None:
        raise ConfigError(f"precision {spec.precision} takes no calibration; drop calibration=")


def prepare_onnx(
    onnx_path: Path, plan: PrecisionPlan, calibration: Calibration, work_dir: Path
) -> Path:
    """The ONNX file TensorRT should parse for this plan (pure ONNX work, no TensorRT)."""
    if plan.onnx_transform == "fp16-cast":
        from workbench.backends.tensorrt.onnx_prep import fp16_cast_model

        out = work_dir / "model.fp16.onnx"
        return out if out.is_file() else fp16_cast_model(onnx_path, out)
    if plan.onnx_transform == "qdq":
        assert isinstance(calibration, ExplicitQDQ)  # checked by _check_calibration
        return calibration.onnx_for_build(onnx_path, work_dir)
    return onnx_path


def build_engine(
    onnx_path: str | Path,
    spec: EngineSpec,
    calibration: Calibration = None,
    api: MemoryApi | None = None,
    cache: EngineCache | None = None,
) -> BuiltEngine:
    """Build ``spec`` from ``onnx_path``, or load the cached engine with the same key.

    Example::

        built = build_engine("model.onnx", EngineSpec("fp16", profile))
        runner = TensorRTRunner(built.engine_path)
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model {onnx_path} does not exist; export it first")
    _check_calibration(spec, calibration)
    trt = import_tensorrt()
    plan = plan_precision(spec.precision, major_version(trt), spec.fp16_fallback)
    if api is None:
        from workbench.backends.tensorrt.cuda import get_memory_api

        api = get_memory_api()
    gpu = api.device_name() if hasattr(api, "device_name") else "unknown"
    cache = cache or EngineCache()
    onnx_sha = sha256_file(onnx_path)
    work_dir = cache_root() / "tensorrt" / "work" / onnx_sha[:16]
    work_dir.mkdir(parents=True, exist_ok=True)
    build_onnx = prepare_onnx(onnx_path, plan, calibration, work_dir)
    calib_sha = calibration.content_sha256(build_onnx) if calibration is not None else ""
    key = EngineKey(onnx_sha, spec.as_dict(), calib_sha, str(trt.__version__), gpu)
    if cache.load(key) is not None:
        log.info("engine cache hit: %s", cache.engine_path(key))
        return _result(cache, key, plan, build_onnx, True, 0.0)
    t0 = time.perf_counter()
    timing = timing_cache_path(cache.root.parent, str(trt.__version__), gpu)
    engine_bytes = _build(trt, build_onnx, spec, plan, calibration, api, work_dir, timing)
    seconds = time.perf_counter() - t0
    path = cache.store(key, engine_bytes, {"build_seconds": seconds, "plan": plan.note})
    _write_audit(trt, engine_bytes, spec, path.parent)
    log.info("built %s engine in %.1fs: %s", spec.precision, seconds, path)
    return _result(cache, key, plan, build_onnx, False, seconds)


def _result(
    cache: EngineCache, key: EngineKey, plan: PrecisionPlan, onnx: Path, hit: bool, sec: float
) -> BuiltEngine:
    d = cache.entry_dir(key)
    audit = None
    layers = d / "layers.json"
    if layers.is_file():
        audit = parse_engine_information(layers.read_text(encoding="utf-8"))
    return BuiltEngine(
        cache.engine_path(key), key, plan, onnx, hit, sec, audit, layers if audit else None
    )


def _parse(trt: Any, logger: Any, onnx: Path, strongly_typed: bool) -> tuple[Any, Any, Any]:
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx))
    errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
    if not ok or errors:
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejected {onnx}: {'; '.join(errors) or 'unknown error'}"
        )
    return builder, network, parser


def input_names(network: Any) -> list[str]:
    """Names of the network's inputs; all must be 2-D (batch, sequence) token tensors."""
    names = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if len(tensor.shape) != 2:
            raise EngineBuildError(
                f"input {tensor.name!r} has shape {tuple(tensor.shape)}; the TensorRT backend "
                "expects 2-D (batch, sequence) token inputs"
            )
        names.append(tensor.name)
    return names


def _config(
    trt: Any, builder: Any, spec: EngineSpec, plan: PrecisionPlan, names: Sequence[str]
) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    config.builder_optimization_level = spec.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # needed by the INT8 audit
    if plan.clear_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name in names:
        profile.set_shape(name, spec.profile.min, spec.profile.opt, spec.profile.max)
    config.add_optimization_profile(profile)
    if plan.fp16_flag and not plan.uses_calibrator:
        from workbench.backends.tensorrt.trt10 import apply_fp16_flag

        apply_fp16_flag(trt, config)
    return config


def _build(
    trt: Any,
    onnx: Path,
    spec: EngineSpec,
    plan: PrecisionPlan,
    calibration: Calibration,
    api: MemoryApi,
    work_dir: Path,
    timing_path: Path,
) -> bytes:
    logger = make_logger(trt)
    builder, network, _parser = _parse(trt, logger, onnx, plan.strongly_typed)
    names = input_names(network)
    config = _config(trt, builder, spec, plan, names)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    if not config.set_timing_cache(timing, ignore_mismatch=False):
        log.warning(
            "timing cache %s does not fit this TensorRT/GPU; starting a new one", timing_path
        )
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    if plan.uses_calibrator:
        assert isinstance(calibration, ImplicitCalibration) and spec.calibration_shape
        serialized = _build_implicit(
            trt, builder, network, config, calibration, spec, api, work_dir
        )
    else:
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT could not build the {spec.precision} engine: "
            f"{'; '.join(logger.errors[-3:]) or 'see the TensorRT log above'}"
        )
    atomic_write_bytes(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _build_implicit(
    trt: Any,
    builder: Any,
    network: Any,
    config: Any,
    calibration: ImplicitCalibration,
    spec: EngineSpec,
    api: MemoryApi,
    work_dir: Path,
) -> Any:
    from workbench.backends.tensorrt.trt10 import configure_implicit_int8

    shape = spec.calibration_shape
    assert shape is not None
    if not spec.profile.contains(shape):
        raise ConfigError(f"calibration shape {shape} lies outside the profile {spec.profile}")
    names = input_names(network)
    with calibration.calibrator(api, str(trt.__version__), work_dir) as (calib, feeder, cache_io):
        configure_implicit_int8(trt, builder, config, calib, names, shape, spec.fp16_fallback)
        serialized = builder.build_serialized_network(network, config)
        cache_io.verify()
        feeder.verify(cache_used=cache_io.cache_used)
    return serialized


def _write_audit(trt: Any, engine_bytes: bytes, spec: EngineSpec, entry_dir: Path) -> None:
    """Store the inspector's JSON (at the profile's opt shape) and its audit beside the engine."""
    runtime = trt.Runtime(make_logger(trt))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise EngineBuildError("TensorRT cannot deserialize the engine it just built")
    context = engine.create_execution_context()
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            context.set_input_shape(name, spec.profile.opt)
    text = inspect_engine(trt, engine, context)
    (entry_dir / "layers.json").write_text(text, encoding="utf-8")
    audit = parse_engine_information(text)
    from workbench.results.serde import to_dict

    atomic_write_json(entry_dir / "audit.json", to_dict(audit))
    for warning in audit.warnings:
        log.warning("INT8 audit (%s): %s", spec.precision, warning)
