"""FP8 / INT8 Linears on CUDA: the real kernels against the float64 reference, compile, graphs."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.gpu.conftest import random_feed
from tests.gpu.cuda import requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]

PRECISIONS = ["fp8", "int8-static", "int8-dynamic"]


def _fp8_reason() -> str | None:
    import torch

    if torch.cuda.get_device_capability() < (8, 9):
        return "FP8 matmuls need compute capability >= 8.9 (Ada/Hopper)"
    return None


def _skip_unsupported(precision: str) -> None:
    reason = _fp8_reason() if precision == "fp8" else None
    if reason:
        pytest.skip(reason)


def rel_err(out, ref) -> float:
    import torch

    assert bool(torch.isfinite(out).all()), "NaN/Inf in the output"
    return float((out.double() - ref.double()).norm() / ref.double().norm())


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_kernels_match_reference(precision, dtype, per_channel):
    import torch

    from workbench.backends.pytorch.lowp import QuantLinear

    _skip_unsupported(precision)
    dt = getattr(torch, dtype)
    torch.manual_seed(0)
    for seed, (k, n, m) in enumerate([(768, 3072, 256), (256, 40, 5)]):  # N padded; M <= 16
        lin = torch.nn.Linear(k, n)
        gen = torch.Generator().manual_seed(seed)
        x = (torch.randn(m, k, generator=gen) * 3).to(dt)
        q = QuantLinear(lin, precision, 9.0, per_channel=per_channel).to("cuda", dt)
        r = QuantLinear(lin, precision, 9.0, True, per_channel).to("cuda", dt)
        with torch.no_grad():
            out = torch.full((m, n), float("nan"), device="cuda", dtype=dt)
            out.copy_(q(x.cuda()))
            ref = r(x.cuda().double()).to(torch.float64)  # the float64 oracle, same inputs
        assert out.dtype == dt and out.shape == (m, n)
        tol = 8e-3 if dtype == "bfloat16" else 2e-3  # output rounding only
        assert rel_err(out, ref) < tol, (precision, dtype, k, n, m)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_compiled_graph_classifier_agrees_with_fp32(mean_pool_classifier, precision):
    """Quantized tiny classifier: torch.compile + CUDA graph = eager kernels; close to FP32."""
    import torch

    from workbench.backends.pytorch.lowp import quantize_linears

    _skip_unsupported(precision)
    model = mean_pool_classifier
    calib = {k: torch.from_numpy(v) for k, v in random_feed(32, 64, 11, pad=True).items()}
    amax = _hook_amax(model, calib)
    with torch.no_grad():
        # quantized on the GPU from the FP32 weights, then the float parts cast to FP16
        q = quantize_linears(copy.deepcopy(model).cuda(), amax, precision).half()
    compiled = torch.compile(q, dynamic=False)
    feeds = [random_feed(16, 64, s, pad=True) for s in (1, 2, 3)]
    static = {k: torch.from_numpy(v).cuda() for k, v in feeds[0].items()}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):
            compiled(**static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph, stream=stream):
        out = compiled(**static)
    agree = []
    for f in feeds[1:]:  # fresh inputs through the captured graph
        for k, v in static.items():
            v.copy_(torch.from_numpy(f[k]))
        graph.replay()
        got = out.float().cpu()
        with torch.inference_mode():
            eager = q(**{k: torch.from_numpy(v).cuda() for k, v in f.items()}).float().cpu()
            ref = model(**{k: torch.from_numpy(v) for k, v in f.items()})
        assert rel_err(got, eager) < 1e-2
        assert rel_err(got, ref) < 0.1, precision
        agree.append(float((got.argmax(1) == ref.argmax(1)).float().mean()))
    assert np.mean(agree) >= 0.9, (precision, agree)


def _hook_amax(model, feed) -> dict[str, float]:
    import torch

    amax: dict[str, float] = {}
    hooks = [
        mod.register_forward_hook(
            lambda m, inp, out, n=name: amax.__setitem__(
                n, max(amax.get(n, 0.0), float(inp[0].abs().max()))
            )
        )
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    ]
    with torch.no_grad():
        model(**feed)
    for h in hooks:
        h.remove()
    return amax
