"""Parts of the GPU backends that run anywhere: option checks, skips, fit arithmetic, records."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.gpu.conftest import random_feed
from tests.gpu.cuda import CUDA_SKIP_REASON, requires_cuda
from workbench.errors import BackendUnavailableError, ConfigError


def test_instances_fit():
    from workbench.evaluate.gpu_timing import instances_fit

    assert instances_fit(16384, 1000, 500) == 15
    assert instances_fit(1000, 2000) == 0
    with pytest.raises(ConfigError):
        instances_fit(1000, 0)


def test_runner_rejects_cuda_only_options_on_cpu(mean_pool_classifier):
    from workbench.backends.pytorch.runner import TorchRunner

    for kwargs in ({"precision": "tf32"}, {"cuda_graphs": True}):
        with pytest.raises(ConfigError, match="CUDA device"):
            TorchRunner(mean_pool_classifier, "x", device="cpu", **kwargs)
    with pytest.raises(ConfigError, match="compile_mode"):
        TorchRunner(mean_pool_classifier, "x", compile_mode="reduce-overhead")
    with pytest.raises(ConfigError, match="cast"):
        TorchRunner(mean_pool_classifier, "x", cast="half")


def test_hf_classifier_on_cpu_returns_its_logits(hf_classifier):
    import torch

    from workbench.backends.pytorch.runner import TorchRunner

    feed = random_feed(2, 24, 3, pad=True)
    with TorchRunner(hf_classifier, "hf") as r:
        out = r.infer(feed)["logits"]
        assert [s.name for s in r.input_specs] == [
            "input_ids",
            "attention_mask",
            "token_type_ids",
        ]
    with torch.inference_mode():
        want = hf_classifier(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-5, atol=1e-6)


def test_ort_cuda_skips_with_a_reason_without_onnxruntime_gpu(request, tmp_path):
    from workbench.backends.onnxruntime.cuda import (
        make_ort_cuda_runner,
        ort_cuda_unavailable_reason,
    )

    reason = ort_cuda_unavailable_reason()
    if reason is None:  # onnxruntime-gpu present: it must really run
        with make_ort_cuda_runner(request.getfixturevalue("tiny_onnx")) as r:
            assert r.device.startswith("cuda")
        return
    assert "onnxruntime" in reason or "GPU" in reason
    with pytest.raises(BackendUnavailableError, match="unavailable"):
        make_ort_cuda_runner(tmp_path / "model.onnx")


@pytest.mark.skipif(CUDA_SKIP_REASON is None, reason="this machine has a GPU")
def test_gpu_timing_says_why_on_cpu(mean_pool_classifier):
    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.evaluate.gpu_timing import measure_gpu_latency

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        measure_gpu_latency(TorchRunner(mean_pool_classifier), random_feed(1, 8, 0))


@pytest.mark.gpu
@requires_cuda
def test_requires_cuda_marker_runs_only_on_gpu():
    import torch

    assert torch.cuda.is_available()


def _lat(batch, seq, p50, copies=False):
    from workbench.results.records import LatencyResult

    return LatencyResult(
        batch, seq, 200, 20, p50, p50, p50, p50, batch / (p50 / 1e3), copies, "cuda_event", [p50]
    )


def test_benchmark_tables_and_record_round_trip(tmp_path):
    from benchmarks.gpu import speedups, summary_table, targets
    from workbench.provenance import collect_provenance
    from workbench.results.records import BuildResult, RunResult, load_run, save_run

    def build(name, lats):
        return BuildResult(
            name, "pytorch", "fp16", "NVIDIA H100", "m", "sha", None, lats, 1.0, 512.0, None, ["n"]
        )

    builds = [
        build("bert-base-fp32", [_lat(1, 128, 4.0), _lat(128, 128, 60.0)]),
        build("bert-base-fp16", [_lat(1, 128, 3.5), _lat(128, 128, 7.0)]),
        build("bert-base-fp16-graphs", [_lat(1, 128, 0.45), _lat(1, 128, 0.6, True)]),
    ]
    rows = speedups(builds)
    assert rows[0]["fp16_over_fp32"] == pytest.approx(4.0 / 3.5, abs=0.01)
    t = targets(builds)
    assert t["b1_best_build"] == "bert-base-fp16-graphs" and t["b1_met"]
    assert t["b128_best_seq_per_s"] == round(128 / 0.007) and not t["b128_met"]
    run = RunResult(
        1,
        "gpu-x",
        "rotten_tomatoes",
        "",
        [],
        "bert-base-fp32",
        builds,
        None,
        collect_provenance(gpu="NVIDIA H100"),
        {"speedups": rows, "targets": t},
    )
    save_run(run, tmp_path)
    back = load_run(tmp_path)
    assert back.build("bert-base-fp16-graphs").latency[1].includes_host_device_copies
    table = summary_table(back, [])
    assert "| bert-base-fp16-graphs | 1 | 128 | 0.450 |" in table
