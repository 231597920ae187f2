"""CalibrationTable JSON round-trip and the TensorRT calibration cache writer/reader."""

from __future__ import annotations

import pytest

from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.stats import quantizable_tensors
from workbench.calibration.table import CalibrationTable, calibrate, calibrate_methods
from workbench.calibration.trt_cache import read_trt_cache, trt_version_code, write_trt_cache
from workbench.errors import CalibrationError, ConfigError
from workbench.fileio import sha256_file


@pytest.fixture(scope="module")
def tables(tiny_onnx, unpadded_feeds):
    tables, _ = calibrate_methods(
        tiny_onnx,
        unpadded_feeds,
        ["entropy", "max"],
        calibration_set_sha256="abc",
        open_runner=open_ort_runner,
    )
    return tables


def test_table_has_provenance_and_round_trips(tables, tiny_onnx, tmp_path):
    t = tables["entropy"]
    assert t.method == "entropy" and t.n_samples == 64
    assert t.model_sha256 == sha256_file(tiny_onnx) and t.calibration_set_sha256 == "abc"
    assert list(t.amax) == quantizable_tensors(tiny_onnx)
    back = CalibrationTable.load(t.save(tmp_path / "table.json"))
    assert back == t


def test_calibrate_single_method(tiny_onnx, unpadded_feeds, tables):
    t = calibrate(tiny_onnx, unpadded_feeds[:2], method="max", open_runner=open_ort_runner)
    assert t.method == "max" and t.n_samples == 16
    assert all(t.amax[n] <= tables["max"].amax[n] for n in t.amax)
    with pytest.raises(ConfigError, match="did you mean"):
        calibrate(tiny_onnx, unpadded_feeds, method="percentil-99.9", open_runner=open_ort_runner)


def test_table_load_refuses_garbage(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="not a JSON"):
        CalibrationTable.load(bad)
    bad.write_text('{"x": 1}')
    with pytest.raises(CalibrationError, match="amax"):
        CalibrationTable.load(bad)


def test_trt_cache_round_trip(tables, tiny_onnx, tmp_path):
    t = tables["entropy"]
    path = write_trt_cache(t, tmp_path / "model.calib")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-101601-EntropyCalibration2"
    assert len(lines) == 1 + len(t.amax)
    back = read_trt_cache(path, expected_tensors=quantizable_tensors(tiny_onnx))
    assert back.method == "entropy" and back.source == "tensorrt-cache"
    assert list(back.amax) == list(t.amax)
    for name, amax in t.amax.items():  # float32 scale: same amax to float32 precision
        assert back.amax[name] == pytest.approx(amax, rel=2**-23)


def test_hand_made_line_reads_as_one(tmp_path):
    path = tmp_path / "hand.calib"
    path.write_text("TRT-8601-EntropyCalibration2\nx: 3c010204\n")
    assert read_trt_cache(path).amax["x"] == pytest.approx(1.0, rel=1e-6)
    path.write_text("TRT-101601-MinMaxCalibration\nx: 3c010204\n")
    assert read_trt_cache(path).method == "max"


def test_version_codes():
    assert trt_version_code("10.16.1") == 101601
    assert trt_version_code("8.6.1") == 8601
    assert trt_version_code("8601") == 8601


@pytest.mark.parametrize(
    "header",
    [
        "TRT-8601-LegacyCalibration",
        "TRT-8601-EntropyCalibration",
        "hello",
        "TRT-x-MinMaxCalibration",
    ],
)
def test_cache_with_another_header_is_refused(tmp_path, header):
    path = tmp_path / "other.calib"
    path.write_text(f"{header}\nx: 3c010204\n")
    with pytest.raises(CalibrationError, match="header"):
        read_trt_cache(path)


def test_cache_for_another_model_is_refused(tables, tiny_onnx, tmp_path):
    other = CalibrationTable({"input.1": 1.0, "conv1_out": 2.0}, "entropy", 8, "", "")
    path = write_trt_cache(other, tmp_path / "resnet.calib")
    with pytest.raises(CalibrationError, match="another model"):
        read_trt_cache(path, expected_tensors=quantizable_tensors(tiny_onnx))
    names = quantizable_tensors(tiny_onnx)
    partial = CalibrationTable({n: 1.0 for n in names[:3]}, "entropy", 8, "", "")
    path = write_trt_cache(partial, tmp_path / "partial.calib")
    with pytest.raises(CalibrationError, match=f"lacks {len(names) - 3} of"):
        read_trt_cache(path, expected_tensors=names)


def test_cache_with_a_bad_line_is_refused(tmp_path):
    path = tmp_path / "bad.calib"
    path.write_text("TRT-101601-EntropyCalibration2\nx: 3c0102\n")
    with pytest.raises(CalibrationError, match=":2: expected"):
        read_trt_cache(path)
    with pytest.raises(CalibrationError, match="does not exist"):
        read_trt_cache(tmp_path / "missing.calib")
