"""TorchRunner on CUDA: every precision against the CPU FP32 reference, graphs, compile."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.gpu.conftest import random_feed
from tests.gpu.cuda import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]

# ||out - ref|| / ||ref|| limits (METHOD.md: tf32 ~3e-4, bf16 1e-3..1e-2)
REL_TOL = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    assert np.all(np.isfinite(out)), "NaN/Inf in the output"
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def cpu_reference(model, feed) -> np.ndarray:
    from workbench.backends.pytorch.runner import TorchRunner

    with TorchRunner(copy.deepcopy(model), "cpu-ref") as r:
        return r.infer(feed)["logits"]


@pytest.mark.parametrize("cast", ["cast", "autocast"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_precisions_match_cpu_fp32(mean_pool_classifier, precision, cast):
    from workbench.backends.pytorch.runner import TorchRunner

    for seed in (0, 1):  # fresh inputs each time, padded rows included
        feed = random_feed(4, 48, seed, pad=True)
        ref = cpu_reference(mean_pool_classifier, feed)
        with TorchRunner(
            copy.deepcopy(mean_pool_classifier), "gpu", precision, "cuda", cast=cast
        ) as r:
            out = r.infer(feed)["logits"]
        assert out.dtype == np.float32 and out.shape == ref.shape
        assert rel_err(out, ref) < REL_TOL[precision], (precision, cast)


def test_hf_sequence_classifier_on_cuda(hf_classifier):
    from workbench.backends.pytorch.runner import TorchRunner

    feed = random_feed(3, 40, 7, pad=True)
    ref = cpu_reference(hf_classifier, feed)
    with TorchRunner(copy.deepcopy(hf_classifier), "hf-fp16", "fp16", "cuda") as r:
        out = r.infer(feed)["logits"]
    assert out.shape == (3, 3)
    assert rel_err(out, ref) < REL_TOL["fp16"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replay_equals_eager_on_fresh_inputs(mean_pool_classifier, precision):
    from workbench.backends.pytorch.runner import TorchRunner

    eager = TorchRunner(copy.deepcopy(mean_pool_classifier), "eager", precision, "cuda")
    graphs = TorchRunner(
        copy.deepcopy(mean_pool_classifier), "graphs", precision, "cuda", cuda_graphs=True
    )
    outs = []
    for seed in (10, 11, 12):
        feed = random_feed(2, 64, seed, pad=seed == 12)
        want, got = eager.infer(feed)["logits"], graphs.infer(feed)["logits"]
        assert rel_err(got, want) < 2e-3
        outs.append(got)
    assert not np.allclose(outs[0], outs[1]), "graph replay ignored its new inputs"
    # a second shape gets its own graph; the first still replays correctly afterwards
    feed = random_feed(1, 16, 13)
    assert rel_err(graphs.infer(feed)["logits"], eager.infer(feed)["logits"]) < 2e-3
    feed = random_feed(2, 64, 14)
    assert rel_err(graphs.infer(feed)["logits"], eager.infer(feed)["logits"]) < 2e-3
    eager.close()
    graphs.close()


def test_compiled_graphs_match_eager(mean_pool_classifier):
    from workbench.backends.pytorch.runner import TorchRunner

    eager = TorchRunner(copy.deepcopy(mean_pool_classifier), "eager", "fp16", "cuda")
    comp = TorchRunner(
        copy.deepcopy(mean_pool_classifier),
        "compiled",
        "fp16",
        "cuda",
        compile_mode="default",
        cuda_graphs=True,
    )
    for seed in (20, 21):
        feed = random_feed(2, 32, seed)
        assert rel_err(comp.infer(feed)["logits"], eager.infer(feed)["logits"]) < 5e-3
    assert any(n.startswith("torch.compile(mode='default') (per layer") for n in comp.describe())
    comp.close()
    eager.close()


def test_tf32_flag_is_scoped_to_the_tf32_build(mean_pool_classifier):
    import torch

    from workbench.backends.pytorch.runner import TorchRunner

    before = torch.backends.cuda.matmul.allow_tf32
    with TorchRunner(copy.deepcopy(mean_pool_classifier), "tf32", "tf32", "cuda") as r:
        r.infer(random_feed(1, 16, 0))
    assert torch.backends.cuda.matmul.allow_tf32 == before
