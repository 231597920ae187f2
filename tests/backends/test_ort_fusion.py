"""BERT fusion before Q/DQ (MultiHeadAttention, BiasGelu) and INT8 on top."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.calibration.conftest import random_texts
from workbench.errors import ConfigError


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=40 + s)) for s in range(4)]  # padded batches


@pytest.fixture(scope="module")
def fused(tiny_onnx, tmp_path_factory):
    from workbench.backends.onnxruntime.fusion import fuse_bert

    return fuse_bert(tiny_onnx, tmp_path_factory.mktemp("fused") / "m.onnx", num_heads=2)


def _logits(path, feeds) -> np.ndarray:
    from workbench.backends.onnxruntime.runner import OrtRunner

    with OrtRunner(path) as r:
        return np.concatenate([r.infer(f)["logits"] for f in feeds])


def test_fusion_replaces_attention_and_keeps_logits(tiny_onnx, fused, feeds) -> None:
    import onnx

    ops = Counter(n.op_type for n in onnx.load(str(fused.path)).graph.node)
    assert fused.attention_fused == 2 and ops["MultiHeadAttention"] == 2
    assert ops["SkipLayerNormalization"] == 0 and ops["Softmax"] == 0
    assert ops["LayerNormalization"] >= 2 * 2  # residual + LayerNorm left unfused, per layer
    assert ops["MatMul"] == 2 * 6  # q, k, v, out, ffn up/down per layer stay quantizable
    assert fused.fused_ops["MultiHeadAttention"] == 2
    mask = np.concatenate([f["attention_mask"].ravel() for f in feeds])
    assert (mask == 0).any(), "the check needs padded positions to exercise the mask"
    np.testing.assert_allclose(_logits(fused.path, feeds), _logits(tiny_onnx, feeds), atol=1e-4)


def test_cpu_sessions_keep_add_and_layernorm_apart(fused, tmp_path) -> None:
    """ORT fuses Add + LayerNormalization into SkipLayerNormalization by default; the
    workbench's CPU runner turns that fusion off (its CPU kernel is the slower one)."""
    import onnx
    import onnxruntime as ort

    def optimized_ops(path) -> Counter:
        return Counter(n.op_type for n in onnx.load(str(path)).graph.node)

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "default.onnx")
    ort.InferenceSession(str(fused.path), opts, providers=["CPUExecutionProvider"])
    assert optimized_ops(tmp_path / "default.onnx")["SkipLayerNormalization"] >= 2
    from workbench.backends.onnxruntime.runner import OrtRunner

    with OrtRunner(fused.path, optimized_model_path=tmp_path / "ours.onnx"):
        pass
    ops = optimized_ops(tmp_path / "ours.onnx")
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] >= 4


def test_qdq_on_fused_model_quantizes_every_projection(fused, feeds, tmp_path) -> None:
    from workbench.backends.onnxruntime.build import int8_coverage
    from workbench.backends.onnxruntime.fusion import unshare_dequantize
    from workbench.backends.onnxruntime.runner import OrtRunner, open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate

    table = calibrate(fused.path, feeds[:2], "max", open_runner=open_ort_runner)
    shared = write_qdq_model(fused.path, table, tmp_path / "q.onnx", per_channel=False)
    qdq = unshare_dequantize(shared, tmp_path / "q.ort.onnx")
    opt = tmp_path / "q.opt.onnx"
    with OrtRunner(qdq, optimized_model_path=opt) as r:
        logits = np.concatenate([r.infer(f)["logits"] for f in feeds])
    cov = int8_coverage(opt)
    # all 12 projections run in INT8; only the 2 fused attention cores and the head are float
    assert cov.quantized_matmul == 12 and cov.float_matmul <= 3
    ref = _logits(fused.path, feeds)
    assert np.mean(logits.argmax(1) == ref.argmax(1)) >= 0.9
    np.testing.assert_allclose(logits, _logits(shared, feeds), atol=1e-3)  # same arithmetic


def test_fusion_is_cached_and_checks_input(tiny_onnx, tmp_path) -> None:
    import onnx

    from workbench.backends.onnxruntime.fusion import fuse_bert

    first = fuse_bert(tiny_onnx, num_heads=2)
    stamp = first.path.stat().st_mtime_ns
    again = fuse_bert(tiny_onnx, num_heads=2)
    assert again == first and again.path.stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="num_heads"):
        fuse_bert(tiny_onnx, num_heads=0)
    m = onnx.load(str(tiny_onnx))
    m.graph.input[1].name = "mask"  # no attention_mask input any more
    onnx.save(m, str(tmp_path / "nomask.onnx"))
    with pytest.raises(ConfigError, match="attention_mask"):
        fuse_bert(tmp_path / "nomask.onnx", num_heads=2)


def test_unshared_qdq_lets_ort_run_qkv_in_int8(tiny_onnx, feeds, tmp_path) -> None:
    """The shared Q/DQ of Q/K/V leaves those MatMuls float in ORT; private pairs fix that."""
    from workbench.backends.onnxruntime.build import int8_coverage
    from workbench.backends.onnxruntime.fusion import unshare_dequantize
    from workbench.backends.onnxruntime.runner import OrtRunner, open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate

    table = calibrate(tiny_onnx, feeds[:2], "max", open_runner=open_ort_runner)
    shared = write_qdq_model(tiny_onnx, table, tmp_path / "q.onnx", per_channel=True)
    private = unshare_dequantize(shared, tmp_path / "q.ort.onnx")
    cov, out = {}, {}
    for name, path in (("shared", shared), ("private", private)):
        opt = tmp_path / f"{name}.opt.onnx"
        with OrtRunner(path, optimized_model_path=opt) as r:
            out[name] = np.concatenate([r.infer(f)["logits"] for f in feeds])
        cov[name] = int8_coverage(opt)
    assert cov["private"].quantized_matmul == cov["shared"].quantized_matmul + 6  # q, k, v x 2
    assert cov["private"].share > cov["shared"].share
    np.testing.assert_allclose(out["private"], out["shared"], atol=1e-3)
