"""The Q/DQ model: runs in ONNX Runtime, follows the table exactly, stays close to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.qdq import write_qdq_model
from workbench.calibration.table import CalibrationTable, calibrate_methods
from workbench.errors import CalibrationError, ConfigError


@pytest.fixture(scope="module")
def tables(tiny_onnx, unpadded_feeds):
    return calibrate_methods(
        tiny_onnx, unpadded_feeds, ["entropy", "percentile-99.99"], open_runner=open_ort_runner
    )[0]


@pytest.fixture(scope="module")
def test_feed(tiny_tokenizer):
    from tests.calibration.conftest import random_texts

    return tiny_tokenizer.encode(random_texts(16, seed=9))


def logits(path, feed) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], feed)[0]


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("method", ["entropy", "percentile-99.99"])
def test_qdq_runs_and_is_close_to_fp32(tiny_onnx, tables, test_feed, tmp_path, per_channel, method):
    path = write_qdq_model(tiny_onnx, tables[method], tmp_path / "q.onnx", per_channel=per_channel)
    want = logits(tiny_onnx, test_feed)
    got = logits(path, test_feed)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.99
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_qdq_uses_the_table_exactly_and_keeps_other_ops_float(tiny_onnx, tables, tmp_path):
    table = tables["entropy"]
    model = onnx.load(str(write_qdq_model(tiny_onnx, table, tmp_path / "q.onnx")))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert {q.input[0] for q in quants} == set(table.amax)  # one Q per tensor, shared
    for q in quants:
        assert inits[q.input[1]] == np.float32(table.amax[q.input[0]] / 127)
        assert inits[q.input[2]] == 0 and inits[q.input[2]].dtype == np.int8
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            for i in node.input[:2]:
                assert producers[i].op_type == "DequantizeLinear", (node.name, i)
        if node.op_type in ("LayerNormalization", "Softmax", "Add", "Erf"):
            assert all(
                i not in producers or producers[i].op_type != "DequantizeLinear" for i in node.input
            ), node.name


def test_exclude_by_op_type_and_by_name(tiny_onnx, tables, test_feed, tmp_path):
    path = write_qdq_model(
        tiny_onnx, tables["entropy"], tmp_path / "q.onnx", exclude=["Gemm", r"layer\.1\."]
    )
    model = onnx.load(str(path))
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            quantized = any(
                i in producers and producers[i].op_type == "DequantizeLinear" for i in node.input
            )
            assert quantized == (node.op_type == "MatMul" and "layer.1." not in node.name)
    assert logits(path, test_feed).shape == (16, 2)
    with pytest.raises(ConfigError, match="regex"):
        write_qdq_model(tiny_onnx, tables["entropy"], tmp_path / "x.onnx", exclude=["("])
    with pytest.raises(ConfigError, match="no MatMul/Gemm"):
        write_qdq_model(tiny_onnx, tables["entropy"], tmp_path / "x.onnx", exclude=["."])


def test_table_of_another_model_is_refused(tiny_onnx, tables, tmp_path):
    table = CalibrationTable(dict(tables["entropy"].amax), "entropy", 8, "0" * 64, "")
    with pytest.raises(CalibrationError, match="different model"):
        write_qdq_model(tiny_onnx, table, tmp_path / "q.onnx")
