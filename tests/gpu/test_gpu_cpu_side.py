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


def test_benchmark_table_from_a_run_record():
    import tempfile
    from pathlib import Path

    from benchmarks.gpu import rows, table
    from tests.run_fixtures import make_demo_run

    with tempfile.TemporaryDirectory() as tmp:
        run = make_demo_run(Path(tmp) / "r")
    got = rows(run)
    assert {r["build"] for r in got} == {b.name for b in run.builds}
    assert all(r["p50_ms"] > 0 for r in got)
    assert table(got).count("\n") == len(got) + 1


@pytest.mark.parametrize("rows", [5, 11])
def test_padded_evaluation_returns_the_unpadded_logits(hf_classifier, rows):
    """pad_to: every batch runs at one (batch, seq) shape; the real rows' logits do not move."""
    from workbench.backends.pytorch.runner import TorchRunner

    feed = random_feed(rows, 20, 7, pad=True)
    with TorchRunner(hf_classifier, "plain") as r:
        want = r.infer(feed)["logits"]
    with TorchRunner(hf_classifier, "padded", pad_to=(8, 64)) as r:
        got = r.infer(feed)["logits"]
        assert r.eval_batch_size == 8
        assert any("padded to 8 x 64" in n for n in r.describe())
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_pad_feed_masks_new_positions_and_copies_rows():
    from workbench.backends.pytorch.runner import pad_feed

    feed = random_feed(3, 5, 1)
    out = pad_feed(feed, 4, 8)
    assert out["input_ids"].shape == (4, 8)
    assert (out["attention_mask"][:3, 5:] == 0).all()
    np.testing.assert_array_equal(out["input_ids"][:3, :5], feed["input_ids"])
    np.testing.assert_array_equal(out["input_ids"][3, :5], feed["input_ids"][0])


def test_layer_stack_finds_the_encoder_layers(hf_classifier, mean_pool_classifier):
    from workbench.backends.pytorch.runner import layer_stack

    for model in (hf_classifier, mean_pool_classifier):
        stack = layer_stack(model)
        assert stack is not None and len(stack) == 2
        assert type(stack[0]).__name__.endswith("Layer")


def test_sensitivity_scores_on_the_cpu_without_onnxruntime_gpu():
    from workbench.backends.onnxruntime.cuda import ort_cuda_unavailable_reason
    from workbench.evaluate.scorer import eval_device

    assert eval_device() == ("cpu" if ort_cuda_unavailable_reason() else "cuda")
