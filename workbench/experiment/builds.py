"""Which builds an experiment runs: its [[build]] tables, or what makes sense on this machine."""

from __future__ import annotations

import dataclasses

from workbench.backends.registry import capabilities, check_supported, get_backend
from workbench.errors import BackendUnavailableError, ConfigError
from workbench.experiment.spec import default_build_name
from workbench.results.precision import precision
from workbench.results.records import SkippedBuild
from workbench.results.spec import BuildSpec, Experiment

AUTO_BUILDS = (  # (backend, device, precision), in run order; compiled with CUDA graphs where
    # the backend's capabilities allow it (``compile_on``)
    ("pytorch", "cpu", "fp32"),
    ("onnxruntime", "cpu", "fp32"),
    ("onnxruntime", "cpu", "int8-static"),
    ("onnxruntime", "cpu", "int8-dynamic"),
    ("pytorch", "cuda", "fp16"),
    ("pytorch", "cuda", "bf16"),
    ("pytorch", "cuda", "fp8"),
    ("pytorch", "cuda", "int8-static"),
    ("onnxruntime", "cuda", "fp32"),  # onnxruntime-gpu
    ("onnxruntime", "cuda", "fp16"),
    ("onnxruntime", "cuda", "int8-static"),
    ("tensorrt", "cuda", "fp16"),
    ("tensorrt", "cuda", "int8-explicit"),
)


def auto_builds(exp: Experiment) -> tuple[BuildSpec, ...]:
    """CPU: PyTorch FP32, ORT FP32, ORT INT8 static and dynamic; a CUDA GPU adds PyTorch
    FP16/BF16 and FP8/INT8 (from the calibration table), each compiled (per layer, so
    quantization fuses into its producers) with CUDA graphs; TensorRT adds its FP16 and
    INT8-explicit engines; onnxruntime-gpu adds ORT CUDA FP32, FP16 and the Q/DQ model.

    CPU builds are always listed (one that cannot run stops or is skipped with its reason);
    GPU builds only where their backend runs on this machine."""
    runs: dict[tuple[str, str], bool] = {}
    out = []
    for backend, device, prec in AUTO_BUILDS:
        if not _has_module(exp, backend):
            continue
        if device != "cpu":
            if (backend, device) not in runs:
                reason = get_backend(backend).unavailable_reason(device)
                runs[backend, device] = reason is None
            if not runs[backend, device]:
                continue
        out.append(_spec(backend, device, prec))
    return tuple(out)


def _has_module(exp: Experiment, backend: str) -> bool:
    """False when ``backend`` builds from the PyTorch module and the model is an .onnx file."""
    return exp.model.kind != "onnx" or not capabilities(backend).needs_torch_module


def _spec(backend: str, device: str, precision: str) -> BuildSpec:
    fast = device in capabilities(backend).compile_on
    b = BuildSpec(backend, precision, device, compile=fast, cuda_graphs=fast)
    return dataclasses.replace(b, name=default_build_name(b))


def plan_builds(
    exp: Experiment, skip_unavailable: bool
) -> tuple[list[BuildSpec], list[SkippedBuild]]:
    """(builds to run, builds not run and why); raises before any work when one cannot run."""
    builds = list(exp.builds or auto_builds(exp))
    skipped: list[SkippedBuild] = []
    run = []
    for b in builds:
        check_supported(b.backend, b.device, b.precision)
        if b.graph == "fused":  # before any data is read or file written
            from workbench.backends.onnxruntime.fused_graph import check_fusable

            check_fusable(exp.model.kind, exp.model.path, b.name)
        if not _has_module(exp, b.backend):
            raise ConfigError(
                f"build {b.name}: an .onnx model has no PyTorch module; use backend = onnxruntime"
            )
        reason = get_backend(b.backend).unavailable_reason(b.device)
        if reason is None:
            run.append(b)
        elif skip_unavailable:
            skipped.append(SkippedBuild(b.name, b.backend, b.device, b.precision, reason))
        else:
            raise BackendUnavailableError(
                f"build {b.name} cannot run here: {reason} (or pass --skip-unavailable)"
            )
    if not run:
        raise BackendUnavailableError("none of the experiment's builds can run on this machine")
    return run, skipped


def reference_build(exp: Experiment, builds: list[BuildSpec]) -> str:
    """The build fidelity is measured against: [evaluate] reference, else the first FP32 one
    (on CPU, of a backend that runs the model as trained, when there is one)."""
    names = [b.name for b in builds]
    if exp.evaluate.reference:
        if exp.evaluate.reference not in names:
            raise ConfigError(
                f"[evaluate] reference = {exp.evaluate.reference!r} is not a build that runs; "
                f"builds: {', '.join(names)}"
            )
        return exp.evaluate.reference
    fp32 = [b for b in builds if precision(b.precision).dtype == "fp32"]
    preferred = [b for b in fp32 if capabilities(b.backend).reference and b.device == "cpu"]
    return (preferred or fp32 or builds)[0].name
