"""GPU timing with CUDA events, multi-stream throughput, and GPU memory per build.

Latency: warm-up, then >= 200 timed runs, each bracketed by CUDA events and
synchronised, so a sample is the time from enqueue to completion (launch gaps
included). ``include_copies`` times the whole ``numpy -> device -> numpy`` path;
without it the inputs already live on the device. Both give the CPU path's
``LatencyResult`` record with ``timer="cuda_event"``.

Throughput: pinned host buffers, 2-4 CUDA streams each with its own input and
output buffers (and CUDA graph, if the runner uses graphs), so host->device copies
and kernels of one batch overlap another's; the gain is measured against the
same loop on one stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.backends.base import DeviceRunner, Feed
from workbench.errors import BackendUnavailableError, ConfigError
from workbench.evaluate.latency import summarize_ms
from workbench.results.records import LatencyResult

log = logging.getLogger(__name__)

MIN_ITERATIONS = 200
MIB = 1024 * 1024


@dataclass(frozen=True)
class StreamThroughput:
    """Sequences/s of one build at one shape: single-stream loop vs ``streams`` streams."""

    batch_size: int
    seq_len: int
    streams: int
    batches: int
    pinned: bool
    cuda_graphs: bool
    single_stream_seq_per_s: float
    multi_stream_seq_per_s: float
    gain: float  # multi / single
    timer: str  # "cuda_event"


@dataclass(frozen=True)
class MemoryFootprint:
    """GPU memory of one build at one shape, and how many instances fit a budget."""

    build: str
    batch_size: int
    seq_len: int
    weights_mb: float  # torch allocated after loading the model
    peak_allocated_mb: float  # torch.cuda.max_memory_allocated over a forward
    peak_reserved_mb: float  # caching allocator's peak reservation
    context_mb: float | None  # CUDA context + libraries (NVML used - torch reserved)
    nvml_used_mb: float | None  # device memory in use per NVML at the peak
    budget_mb: float
    instances_same_process: int  # sharing one CUDA context
    instances_separate_processes: int  # each with its own context


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError("GPU timing needs torch: pip install -e '.[torch]'") from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError("GPU timing needs a CUDA GPU; torch sees none")
    return torch


def measure_gpu_latency(
    runner: DeviceRunner,
    feed: Feed,
    iterations: int = MIN_ITERATIONS,
    warmup: int = 20,
    include_copies: bool = False,
) -> LatencyResult:
    """Per-run latency with CUDA events, copies in the timed region or not.

    Example::

        lat = measure_gpu_latency(runner, fixed_shape_feed(texts, tok, 1, 128))
        print(lat.p50_ms, lat.p99_ms)
    """
    torch = _torch()
    if iterations < 1 or warmup < 0:
        raise ConfigError("iterations must be >= 1 and warmup >= 0")
    feed = runner.validate_feed(feed)
    batch, seq = (int(x) for x in feed["input_ids"].shape)
    runner.prepare_shape(batch, seq)
    device_feed = runner.to_device(feed)
    if runner.cuda_graphs:  # write once into the graph's own buffers: no device copy either
        static = runner.graph_inputs(batch, seq)
        with torch.inference_mode():  # graph buffers are inference tensors
            for k, buf in static.items():
                buf.copy_(device_feed[k])
        device_feed = static

    def once() -> None:
        if include_copies:
            runner.infer_validated(feed)
        else:
            runner.run_device(device_feed)

    for _ in range(warmup):
        once()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    samples = np.empty(iterations)
    for i in range(iterations):
        start.record()
        once()
        end.record()
        end.synchronize()
        samples[i] = start.elapsed_time(end)
    return summarize_ms(samples, batch, seq, warmup, include_copies, "cuda_event")


def measure_stream_throughput(
    runner: DeviceRunner,
    feed: Feed,
    streams: int = 4,
    batches: int = 64,
    warmup: int = 8,
) -> StreamThroughput:
    """Sequences/s of ``batches`` batches: one stream vs ``streams`` streams, pinned buffers.

    Each stream owns pinned host input/output buffers, device inputs and (with
    graphs) its own CUDA graph, so batches on different streams never share memory.

    Example::

        tp = measure_stream_throughput(runner, feed, streams=4)
        print(tp.gain)
    """
    torch = _torch()
    if not 2 <= streams <= 8 or batches < streams:
        raise ConfigError("use 2-8 streams and at least as many batches as streams")
    feed = runner.validate_feed(feed)
    batch, seq = (int(x) for x in feed["input_ids"].shape)
    runner.prepare_shape(batch, seq, slots=streams)
    slots = [_Slot(runner, feed, i, torch) for i in range(streams)]
    single = _time_loop(torch, slots[:1], batches, warmup)
    multi = _time_loop(torch, slots, batches, warmup)
    for s in slots[1:]:  # every stream computed the same logits as stream 0
        if not torch.allclose(s.host_out.float(), slots[0].host_out.float(), atol=1e-2):
            raise ConfigError(f"{runner.name}: streams disagree; are buffers shared?")
    single_tp = batch * batches / (single / 1e3)
    multi_tp = batch * batches / (multi / 1e3)
    return StreamThroughput(
        batch_size=batch,
        seq_len=seq,
        streams=streams,
        batches=batches,
        pinned=True,
        cuda_graphs=runner.cuda_graphs,
        single_stream_seq_per_s=single_tp,
        multi_stream_seq_per_s=multi_tp,
        gain=multi_tp / single_tp,
        timer="cuda_event",
    )


class _Slot:
    """One stream's pinned host buffers and device inputs."""

    def __init__(self, runner: DeviceRunner, feed: Feed, index: int, torch: Any) -> None:
        self.runner = runner
        self.index = index
        self.stream = torch.cuda.Stream()
        names = [spec.name for spec in runner.input_specs]
        self.host_in = {k: torch.from_numpy(feed[k]).pin_memory() for k in names}
        batch, seq = feed["input_ids"].shape
        if runner.cuda_graphs:
            self.dev_in = runner.graph_inputs(int(batch), int(seq), index)
        else:
            self.dev_in = {k: v.to(runner.device) for k, v in self.host_in.items()}
        out = runner.run_device(self.dev_in, index)
        torch.cuda.synchronize()
        self.host_out = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)

    def enqueue(self, torch: Any) -> None:
        with torch.cuda.stream(self.stream), torch.inference_mode():
            for k, buf in self.dev_in.items():
                buf.copy_(self.host_in[k], non_blocking=True)
            out = self.runner.run_device(self.dev_in, self.index)
            self.host_out.copy_(out, non_blocking=True)


def _time_loop(torch: Any, slots: list[_Slot], batches: int, warmup: int) -> float:
    """Milliseconds for ``batches`` batches spread round-robin over the slots' streams."""
    main = torch.cuda.current_stream()
    for i in range(warmup):
        slots[i % len(slots)].enqueue(torch)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record(main)
    for s in slots:
        s.stream.wait_event(start)
    for i in range(batches):
        slots[i % len(slots)].enqueue(torch)
    for s in slots:
        main.wait_stream(s.stream)
    end.record(main)
    end.synchronize()
    return float(start.elapsed_time(end))


def nvml_used_mb(device_index: int = 0) -> float | None:
    """Device memory in use per NVML (all processes), or None without nvidia-ml-py."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            return float(pynvml.nvmlDeviceGetMemoryInfo(handle).used) / MIB
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        log.info("NVML unavailable (%s); reporting torch's allocator numbers only", exc)
        return None


def instances_fit(budget_mb: float, per_instance_mb: float, shared_mb: float = 0.0) -> int:
    """How many instances of ``per_instance_mb`` fit in ``budget_mb`` after ``shared_mb``."""
    if per_instance_mb <= 0:
        raise ConfigError("per-instance memory must be positive")
    return max(0, int((budget_mb - shared_mb) // per_instance_mb))


def measure_memory(
    runner: DeviceRunner,
    feed: Feed,
    budget_mb: float,
    weights_mb: float,
    baseline_nvml_mb: float | None = None,
    baseline_allocated_mb: float = 0.0,
) -> MemoryFootprint:
    """Peak GPU memory of one forward of ``runner`` at the feed's shape, and the fit in a budget.

    ``weights_mb`` is what ``torch.cuda.memory_allocated`` grew by when the build was made;
    ``baseline_allocated_mb`` is what was allocated before (other live tensors), left out
    of the peak; ``baseline_nvml_mb`` is NVML's reading before this process used the GPU.
    """
    torch = _torch()
    feed = runner.validate_feed(feed)
    batch, seq = (int(x) for x in feed["input_ids"].shape)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    runner.prepare_shape(batch, seq)
    runner.run_device(runner.to_device(feed))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / MIB - baseline_allocated_mb
    reserved = torch.cuda.max_memory_reserved() / MIB
    used = nvml_used_mb()
    context = None
    if used is not None:
        context = max(0.0, used - (baseline_nvml_mb or 0.0) - torch.cuda.memory_reserved() / MIB)
    return MemoryFootprint(
        build=runner.name,
        batch_size=batch,
        seq_len=seq,
        weights_mb=weights_mb,
        peak_allocated_mb=peak,
        peak_reserved_mb=reserved,
        context_mb=context,
        nvml_used_mb=used,
        budget_mb=budget_mb,
        instances_same_process=instances_fit(budget_mb, peak, context or 0.0),
        instances_separate_processes=instances_fit(budget_mb, peak + (context or 0.0)),
    )
