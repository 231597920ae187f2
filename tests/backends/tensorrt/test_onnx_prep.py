"""ONNX-side preparation checked with ONNX Runtime on CPU: FP16 cast, TRT cache -> Q/DQ bridge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from workbench.backends.tensorrt import ExplicitQDQ, ImplicitCalibration, resolve_calibration
from workbench.backends.tensorrt.onnx_prep import (
    fp16_cast_model,
    onnx_tensor_names,
    trt_cache_to_qdq,
)
from workbench.backends.tensorrt.strategies import table_sha256
from workbench.calibration.table import calibrate
from workbench.calibration.trt_cache import read_trt_cache, write_trt_cache
from workbench.errors import CalibrationError, ConfigError
from workbench.fileio import sha256_file


def _logits(model: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(["logits"], {n: feed[n] for n in names})[0]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = np.sum(a * b, axis=1)
    return float(np.min(num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


@pytest.fixture(scope="module")
def table(tiny_onnx, tiny_feeds):
    return calibrate(tiny_onnx, tiny_feeds, "entropy")


def test_fp16_cast_keeps_io_fp32_and_matches_fp32_logits(tiny_onnx, tiny_feeds, tmp_path) -> None:
    out = fp16_cast_model(tiny_onnx, tmp_path / "m.fp16.onnx")
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


def test_trt_cache_bridge_gives_a_working_qdq_model(tiny_onnx, tiny_feeds, table, tmp_path) -> None:
    cache = write_trt_cache(table, tmp_path / "calib.cache", trt_version="10.16.1")
    back = read_trt_cache(cache)
    for name, amax in table.amax.items():  # float32 scale round trip: oracle within 1 ulp
        assert back.amax[name] == pytest.approx(amax, rel=1e-6)
    qdq = trt_cache_to_qdq(cache, tiny_onnx, tmp_path / "m.qdq.onnx")
    ops = [n.op_type for n in onnx.load(str(qdq)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    for feed in tiny_feeds:
        assert _cosine(_logits(tiny_onnx, feed), _logits(qdq, feed)) > 0.98


def test_trt_cache_from_another_model_is_refused(tiny_onnx, tmp_path) -> None:
    other = tmp_path / "other.cache"
    other.write_text("TRT-101601-EntropyCalibration2\nsome/other/tensor: 3c010a14\n")
    with pytest.raises(CalibrationError, match="another model"):
        trt_cache_to_qdq(other, tiny_onnx, tmp_path / "x.onnx")


def test_explicit_strategy_reuses_its_qdq_model(tiny_onnx, table, tmp_path) -> None:
    strat = ExplicitQDQ(table=table)
    first = strat.onnx_for_build(Path(tiny_onnx), tmp_path)
    stamp = first.stat().st_mtime_ns
    again = ExplicitQDQ(table=read_trt_cache(write_trt_cache(table, tmp_path / "c.cache")))
    assert table_sha256(again.table) != ""  # provenance differs, ranges equal within float32
    assert strat.onnx_for_build(Path(tiny_onnx), tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    assert strat.content_sha256(first) == sha256_file(first)
    given = ExplicitQDQ(qdq_onnx=first)
    assert given.onnx_for_build(Path(tiny_onnx), tmp_path / "unused") == first


def test_resolve_calibration(tiny_onnx, table, tmp_path) -> None:
    assert resolve_calibration("fp16", None) is None
    with pytest.raises(ConfigError, match="takes no calibration"):
        resolve_calibration("fp32", table)
    assert resolve_calibration("int8-explicit", table).table is table
    assert resolve_calibration("int8-explicit", tmp_path / "m.onnx").qdq_onnx == tmp_path / "m.onnx"
    cache = write_trt_cache(table, tmp_path / "c.cache")
    from_cache = resolve_calibration("int8-explicit", cache).table
    assert set(from_cache.amax) == set(table.amax)
    with pytest.raises(ConfigError, match="needs a calibration"):
        resolve_calibration("int8-explicit", None)
    with pytest.raises(ConfigError, match="ImplicitCalibration"):
        resolve_calibration("int8-implicit", table)


def test_implicit_content_hash_follows_the_batches(tiny_feeds, tmp_path) -> None:
    a = ImplicitCalibration(tiny_feeds, shape=(2, 32))
    b = ImplicitCalibration([dict(f) for f in tiny_feeds], shape=(2, 32))
    c = ImplicitCalibration(tiny_feeds[:3], shape=(2, 32))
    d = ImplicitCalibration(tiny_feeds, shape=(4, 32))
    assert a.content_sha256(tmp_path) == b.content_sha256(tmp_path)
    assert (
        len({a.content_sha256(tmp_path), c.content_sha256(tmp_path), d.content_sha256(tmp_path)})
        == 3
    )
    assert a.onnx_for_build(tmp_path / "m.onnx", tmp_path) == tmp_path / "m.onnx"


def test_onnx_tensor_names_lists_graph_values(tiny_onnx) -> None:
    names = onnx_tensor_names(tiny_onnx)
    assert names[:3] == ["input_ids", "attention_mask", "token_type_ids"] and "logits" in names
