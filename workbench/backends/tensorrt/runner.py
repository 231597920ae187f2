"""TensorRT runner: the workbench ``Runner`` contract over a serialized engine (TensorRT 10/11).

One execution context per CUDA stream, each with its own pinned-host and device buffers;
tensors are bound by name (``set_input_shape`` / ``set_tensor_address``) and run with
``execute_async_v3``. Latency is timed with CUDA events, with or without the host<->device
copies inside the timed region; several contexts give multi-stream throughput.
Modelled on Polygraphy's ``backend/trt/runner.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.base import Feed, Runner, TensorSpec
from workbench.backends.tensorrt._trt import import_tensorrt, make_logger
from workbench.backends.tensorrt.buffers import MemoryApi, TensorBuffers
from workbench.errors import ConfigError, EngineBuildError, InputMismatchError
from workbench.results.records import LatencyResult

log = logging.getLogger(__name__)

# trt.DataType member name -> NumPy dtype (trt.nptype is pure Python, not in the bindings).
TRT_TO_NUMPY = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """NumPy dtype of a ``trt.DataType``; EngineBuildError for types NumPy lacks (BF16, FP8)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in TRT_TO_NUMPY:
        raise EngineBuildError(f"engine I/O type {name} has no NumPy equivalent; keep I/O FP32")
    return np.dtype(TRT_TO_NUMPY[name])


@dataclass(frozen=True)
class ThroughputResult:
    """Aggregate throughput of several contexts on several streams."""

    streams: int
    batch_size: int
    seq_len: int
    iterations_per_stream: int
    wall_ms: float  # CUDA-event time from the first start to the last finish
    throughput_seq_per_s: float
    includes_host_device_copies: bool


class _Slot:
    """One execution context with its stream, buffers and timing events."""

    def __init__(self, engine: Any, api: MemoryApi) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineBuildError("TensorRT could not create an execution context (GPU memory?)")
        self.api = api
        self.stream = api.stream_create()
        self.buffers = TensorBuffers(api)
        self.start, self.stop = api.event_create(), api.event_create()

    def close(self) -> None:
        self.buffers.close()
        for ev in (self.start, self.stop):
            self.api.event_destroy(ev)
        self.api.stream_destroy(self.stream)
        self.context = None


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine on the GPU.

    Example::

        with TensorRTRunner(built.engine_path, name="trt-fp16", precision="fp16") as r:
            logits = r.infer(feed)["logits"]
            lat = r.measure_latency(feed, iterations=200, include_copies=False)
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        name: str = "trt",
        precision: str = "fp32",
        contexts: int = 1,
        api: MemoryApi | None = None,
    ) -> None:
        if contexts < 1:
            raise ConfigError(f"contexts must be >= 1, got {contexts}")
        trt = import_tensorrt()
        if api is None:
            from workbench.backends.tensorrt.cuda import get_memory_api

            api = get_memory_api()
        self._trt, self.api = trt, api
        self._runtime = trt.Runtime(make_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise EngineBuildError(
                f"TensorRT {trt.__version__} cannot load {engine_path}; engines only load with "
                "the TensorRT version and GPU that built them: rebuild it"
            )
        self.name, self.precision, self.engine_path = name, precision, Path(engine_path)
        self.device = api.device_name() if hasattr(api, "device_name") else "cuda"
        self._inputs, self._outputs = self._io_names()
        self._slots = [_Slot(self._engine, api) for _ in range(contexts)]

    def _io_names(self) -> tuple[list[str], list[str]]:
        inputs: list[str] = []
        outputs: list[str] = []
        for i in range(self._engine.num_io_tensors):
            tname = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(tname) == self._trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(tname)
        return inputs, outputs

    @property
    def input_specs(self) -> list[TensorSpec]:
        specs = []
        for tname in self._inputs:
            dtype = numpy_dtype(self._engine.get_tensor_dtype(tname))
            shape = tuple(None if d < 0 else int(d) for d in self._engine.get_tensor_shape(tname))
            specs.append(TensorSpec(tname, dtype.name, shape))
        return specs

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def profile_shapes(self, tensor: str) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes of an input in optimization profile 0."""
        shapes = self._engine.get_tensor_profile_shape(tensor, 0)
        return tuple(tuple(int(d) for d in s) for s in shapes)

    def _bind(self, slot: _Slot, feed: Feed) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Set shapes, stage inputs in pinned memory, bind every tensor address on ``slot``."""
        for tname in self._inputs:
            arr = feed[tname]
            if not slot.context.set_input_shape(tname, tuple(arr.shape)):
                lo, _, hi = self.profile_shapes(tname)
                raise InputMismatchError(
                    f"{self.name}: input {tname!r} shape {arr.shape} is outside the engine's "
                    f"profile (min {lo}, max {hi}); rebuild with a wider profile"
                )
            slot.buffers.stage(tname, arr)
            ptr = slot.buffers.device_for(tname, tuple(arr.shape), arr.dtype)
            slot.context.set_tensor_address(tname, ptr)
        outs = {}
        for tname in self._outputs:
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(tname))
            dtype = numpy_dtype(self._engine.get_tensor_dtype(tname))
            slot.context.set_tensor_address(tname, slot.buffers.device_for(tname, shape, dtype))
            outs[tname] = (shape, dtype)
        return outs

    def _enqueue(self, slot: _Slot, feed: Feed, outs: dict, copies: bool) -> dict[str, np.ndarray]:
        """Enqueue [H2D], execute, [D2H] on the slot's stream; pinned views valid after sync."""
        if copies:
            for tname in self._inputs:  # staged in pinned memory by _bind
                slot.buffers.enqueue_upload(tname, slot.stream)
        if not slot.context.execute_async_v3(slot.stream):
            raise EngineBuildError(f"{self.name}: execute_async_v3 failed (see TensorRT's log)")
        if not copies:
            return {}
        return {
            tname: slot.buffers.enqueue_download(tname, shape, dtype, slot.stream)
            for tname, (shape, dtype) in outs.items()
        }

    def _infer(self, feed: Feed) -> dict[str, np.ndarray]:
        slot = self._slots[0]
        outs = self._bind(slot, feed)
        views = self._enqueue(slot, feed, outs, copies=True)
        self.api.stream_synchronize(slot.stream)
        return {tname: view.copy() for tname, view in views.items()}

    def measure_latency(
        self, feed: Feed, iterations: int = 100, warmup: int = 10, include_copies: bool = True
    ) -> LatencyResult:
        """CUDA-event latency of one context on one stream; copies in the timed region or not."""
        feed = self.validate_feed(feed)
        slot = self._slots[0]
        outs = self._bind(slot, feed)
        for tname in self._inputs:  # inputs resident on the device for copy-free timing
            slot.buffers.enqueue_upload(tname, slot.stream)
        samples = []
        for i in range(warmup + iterations):
            self.api.event_record(slot.start, slot.stream)
            self._enqueue(slot, feed, outs, include_copies)
            self.api.event_record(slot.stop, slot.stream)
            ms = self.api.event_elapsed_ms(slot.start, slot.stop)
            if i >= warmup:
                samples.append(ms)
        return latency_result(samples, feed, warmup, include_copies)

    def measure_throughput(
        self, feed: Feed, iterations: int = 100, warmup: int = 5, include_copies: bool = True
    ) -> ThroughputResult:
        """Every context runs ``iterations`` batches on its own stream, all streams at once."""
        feed = self.validate_feed(feed)
        binds = [self._bind(slot, feed) for slot in self._slots]
        for slot, outs in zip(self._slots, binds, strict=True):
            for tname in self._inputs:
                slot.buffers.enqueue_upload(tname, slot.stream)
            for _ in range(warmup):
                self._enqueue(slot, feed, outs, include_copies)
        for slot in self._slots:
            self.api.stream_synchronize(slot.stream)
        first = self._slots[0]
        for slot in self._slots:
            self.api.event_record(slot.start, slot.stream)
        for _ in range(iterations):
            for slot, outs in zip(self._slots, binds, strict=True):
                self._enqueue(slot, feed, outs, include_copies)
        for slot in self._slots:
            self.api.event_record(slot.stop, slot.stream)
        wall = max(self.api.event_elapsed_ms(first.start, s.stop) for s in self._slots)
        batch, seq = next(iter(feed.values())).shape[:2]
        n = len(self._slots) * iterations * batch
        return ThroughputResult(
            len(self._slots),
            int(batch),
            int(seq),
            iterations,
            wall,
            n / (wall / 1e3),
            include_copies,
        )

    def close(self) -> None:
        for slot in getattr(self, "_slots", []):
            slot.close()
        self._slots = []
        self._engine = None
        self._runtime = None


def latency_result(
    samples_ms: list[float], feed: Feed, warmup: int, includes_copies: bool
) -> LatencyResult:
    """Percentiles of CUDA-event samples as a results record (pure)."""
    if not samples_ms:
        raise ConfigError("latency needs at least one timed iteration")
    arr = np.asarray(samples_ms, dtype=np.float64)
    batch, seq = next(iter(feed.values())).shape[:2]
    p50 = float(np.percentile(arr, 50))
    return LatencyResult(
        batch_size=int(batch),
        seq_len=int(seq),
        iterations=len(samples_ms),
        warmup=warmup,
        p50_ms=p50,
        p90_ms=float(np.percentile(arr, 90)),
        p99_ms=float(np.percentile(arr, 99)),
        mean_ms=float(arr.mean()),
        throughput_seq_per_s=float(batch) / (p50 / 1e3) if p50 > 0 else float("inf"),
        includes_host_device_copies=includes_copies,
        timer="cuda_event",
        samples_ms=[float(x) for x in samples_ms],
    )
