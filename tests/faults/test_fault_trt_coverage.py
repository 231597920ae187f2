"""Fault 5 (issue 22): a TensorRT calibration cache that covers few of a model's quantizable
activations (the issue's 1 of 49) is refused with one line naming the coverage, unless the caller
accepts it explicitly (``allow_partial=True``); a full cache converts as before."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import pytest

from workbench.calibration.graph import quantizable_tensors
from workbench.calibration.table import CalibrationTable
from workbench.calibration.trt_cache import (
    MIN_COVERAGE,
    read_trt_cache,
    trt_cache_to_qdq,
    write_trt_cache,
)
from workbench.errors import CalibrationError


def _cache(names: list[str], path: Path) -> Path:
    table = CalibrationTable(
        amax={n: 2.0 + i / 10 for i, n in enumerate(names)},
        method="entropy",
        n_samples=8,
        model_sha256="",
        calibration_set_sha256="",
        source="test",
    )
    return write_trt_cache(table, path)


def _activations_quantized(model: Path) -> int:
    g = onnx.load(str(model)).graph
    return sum(1 for n in g.node if n.op_type == "QuantizeLinear")


@pytest.fixture(scope="module")
def names(tiny_onnx) -> list[str]:
    found = quantizable_tensors(tiny_onnx)
    assert len(found) >= 10, found  # enough tensors for a share below and above the threshold
    return found


def test_a_cache_of_one_tensor_is_refused_naming_the_coverage(tiny_onnx, names, tmp_path):
    cache = _cache(names[:1], tmp_path / "one.cache")
    out = tmp_path / "q.onnx"
    with pytest.raises(CalibrationError) as info:
        trt_cache_to_qdq(cache, tiny_onnx, out)
    msg = str(info.value)
    assert f"covers 1 of {tiny_onnx}'s {len(names)} quantizable activations" in msg
    assert "allow_partial=True" in msg and "--allow-partial-cache" in msg and "\n" not in msg
    assert not out.exists()


def test_a_partial_cache_is_accepted_only_when_asked(tiny_onnx, names, tmp_path, caplog):
    cache = _cache(names[:1], tmp_path / "one.cache")
    out = trt_cache_to_qdq(cache, tiny_onnx, tmp_path / "q.onnx", allow_partial=True)
    assert out.is_file() and _activations_quantized(out) >= 1
    assert "the others stay float" in caplog.text  # accepted, but said aloud (WARNING)


@pytest.mark.parametrize("short", [0, 1])
def test_the_threshold_is_a_share_of_the_activations(tiny_onnx, names, tmp_path, short):
    """Exactly the least share that passes, and one tensor fewer, which does not."""
    need = math.ceil(MIN_COVERAGE * len(names))
    cache = _cache(names[: need - short], tmp_path / "c.cache")
    if short:
        with pytest.raises(CalibrationError, match="below 90%"):
            trt_cache_to_qdq(cache, tiny_onnx, tmp_path / "q.onnx")
    else:
        assert trt_cache_to_qdq(cache, tiny_onnx, tmp_path / "q.onnx").is_file()


def test_a_full_cache_converts_and_quantizes_every_activation(tiny_onnx, names, tmp_path):
    cache = _cache(names, tmp_path / "full.cache")
    one = _cache(names[:1], tmp_path / "one.cache")
    partial = trt_cache_to_qdq(one, tiny_onnx, tmp_path / "p.onnx", allow_partial=True)
    full = trt_cache_to_qdq(cache, tiny_onnx, tmp_path / "full.onnx")
    assert _activations_quantized(full) > _activations_quantized(partial)


def test_an_explicit_tensorrt_build_from_a_partial_cache_is_refused(tiny_onnx, names, tmp_path):
    """The Q/DQ model an int8-explicit TensorRT build parses, from a table read from a cache."""
    from tests.backends.tensorrt.conftest import request_for
    from workbench.backends.tensorrt.build import _model_to_parse, plan_for

    table = read_trt_cache(_cache(names[:2], tmp_path / "two.cache")).save(tmp_path / "t.json")
    req = request_for(tiny_onnx, "int8-explicit", tmp_path, table=str(table))
    with pytest.raises(CalibrationError, match=f"covers 2 of .*{len(names)}"):
        _model_to_parse(req, plan_for("int8-explicit", 11), tmp_path)
    assert not (tmp_path / "model.qdq.onnx").exists()
    full = read_trt_cache(_cache(names, tmp_path / "full.cache")).save(tmp_path / "t.json")
    req = request_for(tiny_onnx, "int8-explicit", tmp_path, table=str(full))
    assert _model_to_parse(req, plan_for("int8-explicit", 11), tmp_path).is_file()
