"""CUDA-event latency, multi-stream throughput and memory footprint on a real GPU."""

from __future__ import annotations

import pytest

from tests.gpu.conftest import random_feed
from tests.gpu.cuda import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]


@pytest.fixture
def fp16_graph_runner(mean_pool_classifier):
    from workbench.backends.pytorch.runner import TorchRunner

    with TorchRunner(mean_pool_classifier, "t-fp16-g", "fp16", "cuda", cuda_graphs=True) as r:
        yield r


@pytest.mark.parametrize("copies", [False, True])
def test_latency_record_with_and_without_copies(fp16_graph_runner, copies):
    from workbench.evaluate.gpu_timing import measure_gpu_latency

    lat = measure_gpu_latency(fp16_graph_runner, random_feed(4, 32, 0), include_copies=copies)
    assert lat.timer == "cuda_event"
    assert lat.iterations == 200 and len(lat.samples_ms) == 200
    assert lat.includes_host_device_copies is copies
    assert 0 < lat.p50_ms <= lat.p90_ms <= lat.p99_ms
    assert lat.batch_size == 4 and lat.seq_len == 32
    assert lat.throughput_seq_per_s == pytest.approx(4 / (lat.p50_ms / 1e3))


def test_copies_cost_time(mean_pool_classifier):
    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.evaluate.gpu_timing import measure_gpu_latency

    with TorchRunner(mean_pool_classifier, "t-fp16", "fp16", "cuda") as r:
        feed = random_feed(64, 128, 1)
        bare = measure_gpu_latency(r, feed)
        full = measure_gpu_latency(r, feed, include_copies=True)
    assert full.p50_ms > bare.p50_ms


@pytest.mark.parametrize(("graphs", "streams"), [(False, 2), (True, 2), (True, 4)])
def test_stream_throughput(mean_pool_classifier, graphs, streams):
    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.evaluate.gpu_timing import measure_stream_throughput

    with TorchRunner(mean_pool_classifier, "t", "fp16", "cuda", cuda_graphs=graphs) as r:
        tp = measure_stream_throughput(r, random_feed(8, 64, 2), streams=streams, batches=16)
    assert tp.streams == streams and tp.pinned and tp.cuda_graphs is graphs
    assert tp.single_stream_seq_per_s > 0 and tp.multi_stream_seq_per_s > 0
    assert tp.gain == pytest.approx(tp.multi_stream_seq_per_s / tp.single_stream_seq_per_s)


def test_memory_footprint_and_fit(mean_pool_classifier):
    import torch

    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.evaluate.gpu_timing import MIB, measure_memory

    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated() / MIB
    with TorchRunner(mean_pool_classifier, "t-fp32", "fp32", "cuda") as r:
        weights = torch.cuda.memory_allocated() / MIB - base
        fp = measure_memory(r, random_feed(32, 128, 3), 8192.0, weights, None, base)
    n_params = sum(p.numel() for p in mean_pool_classifier.parameters())
    assert weights == pytest.approx(n_params * 4 / MIB, rel=0.05)
    assert fp.peak_allocated_mb >= fp.weights_mb > 0
    assert fp.instances_same_process >= fp.instances_separate_processes >= 1
