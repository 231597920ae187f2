"""Packing the fused graph's Q/K/V into ORT's Attention: same logits in FP32, QAttention in
dynamic INT8 with the predictions of the unpacked build, layers kept in float left unpacked."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.calibration.conftest import random_texts


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=90 + s)) for s in range(3)]  # padded batches


@pytest.fixture(scope="module")
def fused(tiny_onnx, tmp_path_factory):
    from workbench.backends.onnxruntime.fusion import fuse_bert

    return fuse_bert(tiny_onnx, tmp_path_factory.mktemp("fused") / "m.onnx", num_heads=2).path


def _logits(path, feeds) -> np.ndarray:
    from workbench.backends.onnxruntime.runner import OrtRunner

    with OrtRunner(path) as r:
        return np.concatenate([r.infer(f)["logits"] for f in feeds])


def _ops(path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _packed_copy(fused, out, keep_float=()):
    import onnx

    from workbench.backends.onnxruntime.attention_pack import pack_attention

    model = onnx.load(str(fused))
    n = pack_attention(model, keep_float)
    onnx.save(model, str(out))
    return n


def test_packed_fp32_keeps_logits(fused, feeds, tmp_path) -> None:
    assert _packed_copy(fused, tmp_path / "p.onnx") == 2
    ops = _ops(tmp_path / "p.onnx")
    assert ops["Attention"] == 2 and ops["MultiHeadAttention"] == 0
    assert ops["MatMul"] == 2 * 3  # out and FFN up/down per layer; q, k, v are packed
    mask = np.concatenate([f["attention_mask"].ravel() for f in feeds])
    assert (mask == 0).any(), "the check needs padded positions to exercise the mask"
    np.testing.assert_allclose(
        _logits(tmp_path / "p.onnx", feeds), _logits(fused, feeds), atol=1e-4
    )


def test_keep_float_leaves_that_layer_unpacked(fused, tmp_path) -> None:
    import onnx

    key = next(
        n.name
        for n in onnx.load(str(fused)).graph.node
        if n.name.endswith("layer.1/attention/self/key/MatMul")
    )
    assert _packed_copy(fused, tmp_path / "p.onnx", keep_float=[key]) == 1
    names = {n.name for n in onnx.load(str(tmp_path / "p.onnx")).graph.node}
    assert key in names and _ops(tmp_path / "p.onnx")["MultiHeadAttention"] == 1


def test_plain_graph_is_left_alone(tiny_onnx, tmp_path) -> None:
    assert _packed_copy(tiny_onnx, tmp_path / "p.onnx") == 0


def test_dynamic_int8_runs_qattention_with_the_unpacked_predictions(fused, feeds, tmp_path) -> None:
    """The packed build quantizes the same input with the same shared per-tensor scale and the
    same per-column weight scales, so it predicts what three DynamicQuantizeMatMuls predict."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workbench.backends.onnxruntime.build import quantize_dynamic_int8

    q = quantize_dynamic_int8(fused, per_channel=True)
    assert _ops(q.path)["QAttention"] == 2 and "packed into QAttention" in q.detail
    unpacked = tmp_path / "u.onnx"  # ORT's own quantizer on the unpacked fused graph
    quantize_dynamic(
        str(fused), str(unpacked), per_channel=True, weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"], extra_options={"MatMulConstBOnly": False},
    )  # fmt: skip
    assert _ops(unpacked)["QAttention"] == 0
    got, want = _logits(q.path, feeds), _logits(unpacked, feeds)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert (got.argmax(1) == want.argmax(1)).all()
    ref = _logits(fused, feeds)
    assert np.abs(got - ref).max() > 1e-6  # it is quantized, not the float graph
    kept = next(n.name for n in onnx.load(str(fused)).graph.node if n.name.endswith("query/MatMul"))
    partial = quantize_dynamic_int8(fused, per_channel=True, float_nodes=(kept,))
    assert _ops(partial.path)["QAttention"] == 1 and "1 kept in float" in partial.detail
