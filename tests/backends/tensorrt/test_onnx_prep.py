"""The models TensorRT parses, checked with ONNX Runtime on CPU: FP16 copy, Q/DQ from a table,
and the TensorRT cache <-> table bridge the implicit path writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.backends.tensorrt.conftest import request_for
from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.backends.tensorrt.build import _model_to_parse, plan_for
from workbench.backends.tensorrt.onnx_prep import fp16_cast_model
from workbench.calibration.table import CalibrationTable, calibrate
from workbench.calibration.trt_cache import read_trt_cache, write_trt_cache


def _logits(model: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(["logits"], {n: feed[n] for n in names})[0]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = np.sum(a * b, axis=1)
    return float(np.min(num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


@pytest.fixture(scope="module")
def table(tiny_onnx, tiny_feeds):
    return calibrate(tiny_onnx, tiny_feeds, "entropy", open_runner=open_ort_runner)


def test_fp16_copy_keeps_io_fp32_and_matches_fp32_logits(tiny_onnx, tiny_feeds, tmp_path) -> None:
    out = _model_to_parse(request_for(tiny_onnx, "fp16", tmp_path), plan_for("fp16", 11), tmp_path)
    m = onnx.load(str(out))
    f16 = onnx.TensorProto.FLOAT16
    assert any(i.data_type == f16 for i in m.graph.initializer)
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.type.tensor_type.elem_type for i in m.graph.input} == {onnx.TensorProto.INT64}
    ln = [n for n in m.graph.node if n.op_type == "LayerNormalization"]
    ln_weights = {i.name: i.data_type for i in m.graph.initializer}
    assert ln and all(ln_weights.get(n.input[1], onnx.TensorProto.FLOAT) != f16 for n in ln)
    for feed in tiny_feeds:
        want, got = _logits(tiny_onnx, feed), _logits(out, feed)
        assert got.dtype == np.float32
        assert _cosine(want, got) > 0.999 and np.max(np.abs(want - got)) < 2e-2


def test_fp16_cast_refuses_a_missing_model(tmp_path) -> None:
    from workbench.errors import ModelError

    with pytest.raises(ModelError, match="cannot load"):
        fp16_cast_model(tmp_path / "nope.onnx", tmp_path / "out.onnx")


def test_explicit_build_parses_the_workbench_qdq_model(tiny_onnx, tiny_feeds, table, tmp_path):
    table_file = table.save(tmp_path / "table.json")
    req = request_for(tiny_onnx, "int8-explicit", tmp_path, table=str(table_file))
    qdq = _model_to_parse(req, plan_for("int8-explicit", 11), tmp_path)
    ops = [n.op_type for n in onnx.load(str(qdq)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    for feed in tiny_feeds:
        assert _cosine(_logits(tiny_onnx, feed), _logits(qdq, feed)) > 0.98
    req32 = request_for(tiny_onnx, "fp32", tmp_path)
    assert _model_to_parse(req32, plan_for("fp32", 11), tmp_path) == Path(tiny_onnx)


def test_tensorrt_cache_round_trips_to_a_table_and_a_working_qdq_model(
    tiny_onnx, tiny_feeds, table, tmp_path
) -> None:
    """What int8-implicit keeps (calibration.cache -> tensorrt-ranges.json) feeds int8-explicit."""
    cache = write_trt_cache(table, tmp_path / "calibration.cache", trt_version="10.16.1")
    ranges = read_trt_cache(cache).save(tmp_path / "tensorrt-ranges.json")
    back = CalibrationTable.load(ranges)
    assert back.source == "tensorrt-cache" and back.amax.keys() == table.amax.keys()
    for name, amax in table.amax.items():  # float32 scale round trip: within 1 ulp
        assert back.amax[name] == pytest.approx(amax, rel=1e-6)
    req = request_for(tiny_onnx, "int8-explicit", tmp_path, table=str(ranges))
    qdq = _model_to_parse(req, plan_for("int8-explicit", 10), tmp_path)
    for feed in tiny_feeds:
        assert _cosine(_logits(tiny_onnx, feed), _logits(qdq, feed)) > 0.98
