"""ONNX Runtime INT8 builds run, stay close to FP32, and report what ran in INT8."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from workbench.backends.onnxruntime.build import (
    ORT_CALIBRATION_CAP,
    int8_coverage,
    quantize_dynamic_int8,
    quantize_static_int8_ort,
)
from workbench.backends.onnxruntime.runner import OrtRunner
from workbench.data.tokenize import TextTokenizer
from workbench.errors import CalibrationError

TEXTS = [
    "a fine film",
    "dull and far too long for its own good",
    "the best thing this year , a triumph of craft and heart",
    "not even the cast can save it",
] * 4


@pytest.fixture(scope="module")
def tok(tiny_model):
    return TextTokenizer.from_model_dir(tiny_model.encoder_dir, 64)


def _logits(path, tok, tmp_path, name):
    opt = tmp_path / f"{name}.opt.onnx"
    with OrtRunner(path, optimized_model_path=opt) as r:
        return r.infer(tok.encode(TEXTS))["logits"], opt


def test_dynamic_int8_is_close_and_mostly_int8(tiny_onnx, tok, tmp_path):
    q = quantize_dynamic_int8(tiny_onnx)
    ref, _ = _logits(tiny_onnx, tok, tmp_path, "fp32")
    got, opt = _logits(q.path, tok, tmp_path, "dyn")
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.9
    cov = int8_coverage(opt)
    assert cov.quantized_matmul > 0 and 0 < cov.share <= 1


def test_static_qdq_is_symmetric_matmul_only(tiny_onnx, tok, tmp_path):
    feeds = [tok.encode(TEXTS[i : i + 4]) for i in range(0, len(TEXTS), 4)]
    q = quantize_static_int8_ort(tiny_onnx, feeds, "test-key", "max")
    model = onnx.load(str(q.path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in model.graph.initializer}
    zps = [
        n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
    ]
    assert zps and all(onnx.numpy_helper.to_array(inits[z]).max() == 0 for z in zps if z in inits)
    # Every MatMul reads dequantized inputs; float-sensitive ops (Softmax, LayerNorm's
    # ReduceMean/Pow/Sqrt, GELU's Erf) never do.
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    readers = {n.op_type for n in model.graph.node if set(n.input) & dq_outputs}
    assert "MatMul" in readers
    assert not readers & {"Softmax", "ReduceMean", "Pow", "Sqrt", "Erf", "LayerNormalization"}
    for n in model.graph.node:
        if n.op_type == "MatMul":
            assert set(n.input) <= dq_outputs, n.name
    ref, _ = _logits(tiny_onnx, tok, tmp_path, "fp32b")
    got, _ = _logits(q.path, tok, tmp_path, "static")
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 1.0


def test_static_refuses_empty_and_oversized_sets(tiny_onnx, tok):
    with pytest.raises(CalibrationError, match="empty"):
        quantize_static_int8_ort(tiny_onnx, [], "k-empty")
    big = [tok.encode(["x"] * (ORT_CALIBRATION_CAP + 1))]
    with pytest.raises(CalibrationError, match="cap"):
        quantize_static_int8_ort(tiny_onnx, big, "k-big")
