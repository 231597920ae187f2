"""ONNX Runtime's CUDA provider on a real GPU: FP32, FP16 and the Q/DQ model against CPU FP32."""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends.test_ort_cuda import request
from tests.calibration.conftest import random_texts
from tests.gpu.cuda import requires_cuda
from workbench.backends.onnxruntime.cuda import ort_cuda_unavailable_reason
from workbench.backends.registry import get_backend

ORT_CUDA_REASON = ort_cuda_unavailable_reason()
pytestmark = [
    pytest.mark.gpu,
    requires_cuda,
    pytest.mark.skipif(ORT_CUDA_REASON is not None, reason=ORT_CUDA_REASON or ""),
]

# ||out - ref|| / ||ref|| against ORT CPU FP32 (fp32 runs with TF32 off)
REL_TOL = {"fp32": 1e-4, "fp16": 5e-3}


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    assert np.all(np.isfinite(out)), "NaN/Inf in the output"
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=90 + s)) for s in range(3)]


def _run(runner, feeds) -> np.ndarray:
    with runner:
        return np.concatenate([runner.infer(f)["logits"] for f in feeds])


def _cpu(path, feeds) -> np.ndarray:
    from workbench.backends.onnxruntime.runner import OrtRunner

    return _run(OrtRunner(path), feeds)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_float_builds_run_on_cuda_close_to_cpu_fp32(tiny_onnx, feeds, tmp_path, precision):
    backend = get_backend("onnxruntime")
    req = request(tiny_onnx, tmp_path, precision)
    art = backend.build(req, None)
    runner = backend.open_runner(req, art)
    assert runner.device == "cuda" and "CUDAExecutionProvider" in runner.session_providers
    assert "MatMul" not in runner.cpu_fallback, runner.cpu_fallback
    out = _run(runner, feeds)
    assert out.dtype == np.float32
    assert rel_err(out, _cpu(tiny_onnx, feeds)) < REL_TOL[precision]


def test_qdq_model_on_cuda_matches_its_cpu_run_and_stays_float(tiny_onnx, feeds, tmp_path):
    """The Q/DQ model on CUDA agrees with ORT CPU's INT8 run of it; no INT8 GEMM appears."""
    backend = get_backend("onnxruntime")
    req = request(tiny_onnx, tmp_path, "int8-static")
    art = backend.build(req, lambda: feeds)
    runner = backend.open_runner(req, art)
    assert "CUDAExecutionProvider" in runner.session_providers
    out = _run(runner, feeds)
    ref = _cpu(tiny_onnx, feeds)
    assert rel_err(out, _cpu(art.model_path, feeds)) < 3e-2  # same Q/DQ maths, other kernels
    cos = np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.9
    cov = backend.int8_audit(req, art)
    assert cov is not None and "CUDA-EP" in cov.detail
    assert cov.quantized_matmul == 0 and cov.float_matmul > 0, cov  # DQ -> float MatMul


def test_sensitivity_scores_qdq_models_on_the_gpu(tiny_onnx, feeds, tmp_path):
    """With onnxruntime-gpu, search/sensitivity score Q/DQ models on CUDA: same predictions as
    ORT CPU's INT8 run of the same model (up to a rare flip at a near-tie)."""
    from workbench.evaluate.scorer import eval_device, model_logits

    backend = get_backend("onnxruntime")
    req = request(tiny_onnx, tmp_path, "int8-static")
    art = backend.build(req, lambda: feeds)
    assert eval_device() == "cuda"
    gpu = model_logits(art.model_path, feeds)
    cpu = model_logits(art.model_path, feeds, device="cpu")
    assert gpu.shape == cpu.shape
    assert np.mean(gpu.argmax(1) == cpu.argmax(1)) >= 0.95
    assert rel_err(gpu, cpu) < 3e-2
