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

MODULES = {
    "onnxruntime": "workbench.backends.onnxruntime.backend",
    "pytorch": "workbench.backends.pytorch.backend",
    "tensorrt": "workbench.backends.tensorrt.backend",
}
CalibrationFeeds = Callable[[], Iterable[Feed]]


@dataclass(frozen=True)
class BuildRequest:
    """Everything a backend needs to build one precision of the user's model (JSON-able)."""

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
