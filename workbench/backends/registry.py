"""The backend registry: (backend, device, precision) -> how to build it and open a runner.

Each backend package has a ``backend.py`` with a ``BACKEND`` object implementing
``Backend``; the registry imports it lazily, so asking what exists never imports torch
or TensorRT. The engine runs every build through the same steps with these objects.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from workbench.backends.base import Feed, Runner
from workbench.errors import ConfigError
from workbench.results.records import Int8Coverage
from workbench.results.spec import BuildSpec, CalibrationSpec

MODULES = {
    "onnxruntime": "workbench.backends.onnxruntime.backend",
    "pytorch": "workbench.backends.pytorch.backend",
    "tensorrt": "workbench.backends.tensorrt.backend",
}
CalibrationFeeds = Callable[[], Iterable[Feed]]


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
        )


@dataclass(frozen=True)
class Artifact:
    """What a build produced: the file a runner opens, its hash, and a one-line description."""

    model_path: str
    model_sha256: str
    detail: str


class Backend(Protocol):
    """What every backend package provides."""

    name: str

    def precisions(self, device: str) -> tuple[str, ...]:
        """Precisions this backend builds on ``device``."""
        ...

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


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``onnxruntime``, ``pytorch``, ``tensorrt``)."""
    if name not in MODULES:
        raise ConfigError(f"backend {name!r} unknown; use one of {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name]).BACKEND  # type: ignore[no-any-return]


def check_supported(backend: str, device: str, precision: str) -> None:
    """ConfigError when ``backend`` never builds ``precision`` on ``device``."""
    have = get_backend(backend).precisions(device)
    if precision not in have:
        listed = ", ".join(have) or "nothing"
        raise ConfigError(
            f"{backend} on {device} builds {listed}; precision {precision!r} is not one of them"
        )
