"""The one contract every backend implements: validated ``infer(feed) -> outputs``.

Modelled on Polygraphy's runners: a runner is a context manager; ``infer`` checks
names, ranks and dtypes before the backend sees the feed, so a mismatch is a
one-line ``InputMismatchError`` rather than an error from deep inside a library.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from workbench.closing import Closeable
from workbench.errors import InputMismatchError

Feed = dict[str, np.ndarray]


def feeds_sha256(feeds: Iterable[Feed]) -> str:
    """sha256 of every feed's names, dtypes, shapes and bytes, in order: part of the cache key
    of whatever was computed from these feeds (engines, rankings, sensitivity scans)."""
    h = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            h.update(f"{name}:{feed[name].dtype}:{feed[name].shape}".encode())
            h.update(np.ascontiguousarray(feed[name]).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input; ``None``/str dims are dynamic."""

    name: str
    dtype: str  # numpy dtype name, e.g. "int64"
    shape: tuple[int | str | None, ...]


class Runner(Closeable, ABC):
    """Base class: subclasses implement ``input_specs`` and ``_infer``.

    Example::

        with OrtRunner("model.onnx") as r:
            logits = r.infer(feed)["logits"]
    """

    name: str = "runner"
    backend: str = "unknown"
    precision: str = "fp32"
    device: str = "cpu"
    eval_batch_size: int = 32  # rows per batch when scoring a test set through this runner

    @property
    @abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        """The inputs this runner expects."""

    @abstractmethod
    def _infer(self, feed: Feed) -> dict[str, np.ndarray]:
        """Run the model on an already validated feed."""

    def infer(self, feed: Feed) -> dict[str, np.ndarray]:
        """Validate ``feed`` against ``input_specs``, then run the model."""
        return self._infer(self.validate_feed(feed))

    def infer_validated(self, feed: Feed) -> dict[str, np.ndarray]:
        """Run a feed ``validate_feed`` already returned: timing loops keep the checks out
        of the timed region."""
        return self._infer(feed)

    def validate_feed(self, feed: Feed) -> Feed:
        """Return the feed restricted to the model's inputs, cast to their dtypes."""
        specs = self.input_specs
        missing = [s.name for s in specs if s.name not in feed]
        if missing:
            raise InputMismatchError(
                f"{self.name}: feed lacks input(s) {missing}; the model expects "
                f"{[s.name for s in specs]} — does the tokenizer match the model?"
            )
        out: Feed = {}
        for spec in specs:
            arr = np.asarray(feed[spec.name])
            if arr.ndim != len(spec.shape):
                raise InputMismatchError(
                    f"{self.name}: input {spec.name!r} has rank {arr.ndim}, the model expects "
                    f"shape {spec.shape}"
                )
            for dim, want in zip(arr.shape, spec.shape, strict=True):
                if isinstance(want, int) and want > 0 and dim != want:
                    raise InputMismatchError(
                        f"{self.name}: input {spec.name!r} has shape {arr.shape}, the model "
                        f"expects {spec.shape}"
                    )
            want_dtype = np.dtype(spec.dtype)
            if arr.dtype != want_dtype:
                if arr.dtype.kind != want_dtype.kind:
                    raise InputMismatchError(
                        f"{self.name}: input {spec.name!r} is {arr.dtype}, the model expects "
                        f"{want_dtype}"
                    )
                arr = arr.astype(want_dtype)
            out[spec.name] = np.ascontiguousarray(arr)
        return out

    def close(self) -> None:
        """Release the backend's resources (sessions, engines, device buffers)."""


class DeviceRunner(Protocol):
    """A runner that also runs device-resident inputs (PyTorch on CUDA): what CUDA-event
    timing, stream throughput and GPU memory measurement need beyond the ``Runner``
    contract. Backends whose capabilities say ``cuda_event_timing`` open these."""

    name: str
    device: str
    cuda_graphs: bool

    @property
    def input_specs(self) -> list[TensorSpec]: ...

    def validate_feed(self, feed: Feed) -> Feed: ...

    def infer_validated(self, feed: Feed) -> dict[str, np.ndarray]: ...

    def to_device(self, feed: Feed) -> dict[str, Any]:
        """Copy a validated feed to the runner's device."""
        ...

    def run_device(self, tensors: dict[str, Any], slot: int = 0) -> Any:
        """Outputs for device-resident inputs, without host copies or synchronisation."""
        ...

    def graph_inputs(self, batch: int, seq: int, slot: int = 0) -> dict[str, Any]:
        """The static input buffers of a captured CUDA graph."""
        ...

    def prepare_shape(self, batch: int, seq: int, slots: int = 1) -> None:
        """Compile / capture ahead of timing."""
        ...
