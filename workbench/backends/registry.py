"""The backend registry: (backend, device, precision) -> how to build it and open a runner.

Each backend package has a ``backend.py`` with a ``BACKEND`` object implementing
``Backend``; the registry imports it lazily, so asking what exists never imports torch
or TensorRT. The engine runs every build through the same steps with these objects, and
decides what differs between backends from their ``Capabilities`` (data), never from
their names. A new backend is one folder plus one line in ``MODULES`` (or a
``register_backend`` call; see docs/architecture.md, "Adding a backend").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from workbench.backends.base import Feed, Runner
from workbench.errors import ConfigError
from workbench.results.records import Int8Coverage
from workbench.results.spec import BuildSpec, CalibrationSpec

MODULES = {  # one line per backend shipped here
    "pytorch": "workbench.backends.pytorch.backend",
    "onnxruntime": "workbench.backends.onnxruntime.backend",
    "tensorrt": "workbench.backends.tensorrt.backend",
}
CalibrationFeeds = Callable[[], Iterable[Feed]]
_LOADED: dict[str, Backend] = {}  # imported from MODULES, or registered in this process


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, as data the spec, the engine and the notes read."""

    short_name: str  # in default build names: "ort" -> ort-int8-static
    precisions: Mapping[str, tuple[str, ...]]  # device kind -> precisions built there; the
    # first device is the backend's default, left out of default build names
    isolated_timing: bool = True  # CPU latency in a fresh child process and paired CPU timing
    # (the child opens the backend by name: False for one registered in this process only)
    cuda_event_timing: bool = False  # GPU latency with CUDA events: its runners are
    # ``DeviceRunner``s; else wall clock around synchronous ``infer``
    compile_on: tuple[str, ...] = ()  # devices where compile / cuda_graphs apply
    fused_graph_on: tuple[str, ...] = ()  # devices where graph = "fused" applies
    needs_torch_module: bool = False  # builds from the PyTorch module (not from an .onnx file)
    reference: bool = False  # its CPU FP32 build is the preferred reference (the framework
    # the model was trained in)
    runs_qdq_model: bool = False  # its static INT8 build runs the workbench's Q/DQ model as
    # written: the realization other INT8 builds of the same table are compared with
    own_int8_kernels: bool = False  # its static INT8 build is its own kernels over the same
    # table (noted with its agreement with the Q/DQ model)

    @property
    def devices(self) -> tuple[str, ...]:
        """The device kinds it builds on, its default first."""
        return tuple(self.precisions)

    def builds(self, device: str) -> tuple[str, ...]:
        """Precisions it builds on ``device`` (none on a device it does not run on)."""
        return self.precisions.get(device, ())


@dataclass(frozen=True)
class ModelFiles:
    """The model every build of a run starts from (the Workspace's ``model_files``)."""

    fp32_onnx: str  # the verified FP32 ONNX model
    torch_model: str  # prepared-classifier dir or HF folder ("" for .onnx sources)
    tokenizer_file: str
    max_length: int


@dataclass(frozen=True)
class BuildRequest:
    """Everything a backend needs to build one precision of the user's model (JSON-able).

    Flat on purpose: its JSON is part of every build's cache key. Make one with ``of``::

        req = BuildRequest.of(build_spec, exp.calibration, ws.model_files, table_file=t)
    """

    name: str
    backend: str
    device: str
    precision: str
    compile: bool
    cuda_graphs: bool
    fp32_onnx: str  # the verified FP32 ONNX model
    torch_model: str  # prepared-classifier dir or HF folder ("" for .onnx sources)
    tokenizer_file: str
    max_length: int
    table_file: str  # workbench calibration table JSON ("" when none)
    method: str
    calibrator: str  # "workbench" or "ort"
    per_channel: bool
    exclude: tuple[str, ...]
    cache_dir: str  # where built artifacts are kept (content-addressed by the engine)
    graph: str = "plain"  # "fused": built on ORT's fused BERT graph (fused_graph.py)
    recovery: tuple[str, ...] = ()  # accuracy-recovery options (onnxruntime/recovery.py)

    @classmethod
    def of(
        cls,
        build: BuildSpec,
        calibration: CalibrationSpec,
        model: ModelFiles,
        *,
        table_file: str = "",
        cache_dir: str = "",
    ) -> BuildRequest:
        """``build`` of ``model`` with ``calibration``'s options: the one place the fields are
        filled in (``table_file``: the calibration table, "" when the build needs none)."""
        return cls(
            name=build.name,
            backend=build.backend,
            device=build.device,
            precision=build.precision,
            compile=build.compile,
            cuda_graphs=build.cuda_graphs,
            fp32_onnx=model.fp32_onnx,
            torch_model=model.torch_model,
            tokenizer_file=model.tokenizer_file,
            max_length=model.max_length,
            table_file=table_file,
            method=calibration.method,
            calibrator=calibration.calibrator,
            per_channel=calibration.per_channel,
            exclude=calibration.exclude,
            cache_dir=cache_dir,
            graph=build.graph,
            recovery=build.recovery,
        )


@dataclass(frozen=True)
class Artifact:
    """What a build produced: the file a runner opens, its hash, and a one-line description."""

    model_path: str
    model_sha256: str
    detail: str
    weights: str = ""  # weight scales: "per-channel" | "per-tensor" | "" (float, or not said)


class Backend(Protocol):
    """What every backend package provides."""

    name: str
    capabilities: Capabilities

    def unavailable_reason(self, device: str) -> str | None:
        """Why this backend cannot run on ``device`` here (with the install hint), or None."""
        ...

    def build(self, req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
        """Build (or reuse) the artifact for ``req``."""
        ...

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        """A runner over the built artifact."""
        ...

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        """How much actually runs in INT8 (None for float builds)."""
        ...


def backend_names() -> tuple[str, ...]:
    """Every backend known here: the shipped ones, then any registered in this process."""
    return (*MODULES, *(n for n in _LOADED if n not in MODULES))


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``onnxruntime``, ``pytorch``, ``tensorrt``, ...)."""
    if name not in _LOADED:
        if name not in MODULES:
            known = ", ".join(backend_names())
            raise ConfigError(f"backend {name!r} unknown; use one of {known}")
        _LOADED[name] = importlib.import_module(MODULES[name]).BACKEND
    return _LOADED[name]


def capabilities(name: str) -> Capabilities:
    """What the backend called ``name`` can do (imports its light ``backend.py`` only)."""
    return get_backend(name).capabilities


def register_backend(backend: Backend) -> None:
    """Make ``backend`` known in this process (a plugin, a test's toy backend)."""
    from workbench.results.precision import find_precision

    if backend.name in MODULES:
        raise ConfigError(f"backend {backend.name!r} ships with the workbench; pick another name")
    caps = backend.capabilities
    unknown = sorted({p for d in caps.devices for p in caps.builds(d) if not find_precision(p)})
    if unknown:
        raise ConfigError(
            f"backend {backend.name!r} builds unregistered precision(s) {', '.join(unknown)}; "
            "register_precision them first (workbench.results.precision)"
        )
    _LOADED[backend.name] = backend


def unregister_backend(name: str) -> None:
    """Forget a backend registered with ``register_backend``."""
    if name not in MODULES:
        _LOADED.pop(name, None)


def check_supported(backend: str, device: str, precision: str) -> None:
    """ConfigError when ``backend`` never builds ``precision`` on ``device``."""
    have = capabilities(backend).builds(device)
    if precision not in have:
        listed = ", ".join(have) or "nothing"
        raise ConfigError(
            f"{backend} on {device} builds {listed}; precision {precision!r} is not one of them"
        )
