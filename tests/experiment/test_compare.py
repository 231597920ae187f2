"""Method comparison: one run writes tables, caches, Q/DQ models and a record that round-trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.calibration.conftest import random_texts
from workbench.calibration.stats import quantizable_tensors
from workbench.calibration.table import CalibrationTable
from workbench.calibration.trt_cache import read_trt_cache
from workbench.errors import ConfigError, DataError
from workbench.evaluate.calibration_methods import compare_methods
from workbench.results.calibration import COMPARISON_FILE, CalibrationComparison
from workbench.results.records import SCHEMA_VERSION, load_record


@pytest.fixture(scope="module")
def test_set(tiny_tokenizer):
    texts = random_texts(24, seed=5)
    feeds = [tiny_tokenizer.encode(texts[i : i + 8]) for i in range(0, 24, 8)]
    labels = np.arange(24) % 2
    return feeds, labels


def test_compare_writes_a_complete_record(tiny_onnx, unpadded_feeds, test_set, tmp_path):
    feeds, labels = test_set
    methods = ["entropy", "percentile-99.99", "max", "mse"]
    rec = compare_methods(
        tiny_onnx, unpadded_feeds[:4], feeds, labels, tmp_path, methods,
        labels=["rotten", "fresh"], calibration_set_sha256="c" * 64, sqnr_samples=16,
    )  # fmt: skip
    back = load_record(CalibrationComparison, tmp_path / COMPARISON_FILE)
    assert json.loads((tmp_path / COMPARISON_FILE).read_text())["schema_version"] == SCHEMA_VERSION
    assert [m.method for m in back.methods] == methods
    assert back.best_method in methods and back.n_test == 24 and back.sqnr_samples == 16
    names = quantizable_tensors(tiny_onnx)
    assert [t.name for t in back.all_tensors] == names
    assert len(back.sensitive_tensors) == 12
    sens = [h.sensitivity_db for h in back.sensitive_tensors]
    assert sens == sorted(sens, reverse=True)
    for h in back.sensitive_tensors:
        assert 0 < len(h.counts) <= 128 and len(h.edges) == len(h.counts) + 1
        assert set(h.amax) == set(methods)
    for t in back.all_tensors:
        assert t.amax["max"] == pytest.approx(t.absmax)
        assert t.clipped_fraction["max"] == 0.0
        assert all(math.isnan(v) or -50 < v < 200 for v in t.sqnr_db.values())
    for m in back.methods:
        assert 0 <= m.accuracy <= 1 and m.agreement > 0.8 and m.logit_cosine_min > 0.99
        table = CalibrationTable.load(tmp_path / m.table_file)
        assert table.method == m.method and len(table.amax) == len(rec.all_tensors)
        assert read_trt_cache(tmp_path / m.trt_cache_file, names).amax.keys() == table.amax.keys()
        assert (tmp_path / m.qdq_model_file).is_file()


def test_compare_bad_input(tiny_onnx, unpadded_feeds, test_set, tmp_path):
    feeds, labels = test_set
    with pytest.raises(ConfigError, match="unknown calibration method"):
        compare_methods(tiny_onnx, unpadded_feeds, feeds, labels, tmp_path, ["kl"])
    with pytest.raises(DataError, match="empty"):
        compare_methods(tiny_onnx, unpadded_feeds, [], [], tmp_path, ["max"])
    with pytest.raises(DataError, match="labels"):
        compare_methods(tiny_onnx, unpadded_feeds[:1], feeds, labels[:5], tmp_path, ["max"])


def test_compared_model_is_the_static_builds_file_in_the_cache(
    tiny_onnx, unpadded_feeds, test_set, tmp_path
):
    """One number per quantity: the `max` row evaluates the very Q/DQ file the ORT static
    build runs (same sha256), kept once in the cache, not in the run folder."""
    from workbench.backends.onnxruntime.backend import qdq_model
    from workbench.evaluate.calibration_methods import best_method
    from workbench.fileio import sha256_file

    feeds, labels = test_set
    run = tmp_path / "run"
    rec = compare_methods(
        tiny_onnx, unpadded_feeds[:4], feeds, labels, run, ["max", "entropy"],
        per_channel=True, sqnr_samples=8, cache_dir=tmp_path / "cache", statistics_seconds=9.0,
    )  # fmt: skip
    table = CalibrationTable.load(run / rec.method("max").table_file)
    built = qdq_model(tiny_onnx, table, True, (), tmp_path / "cache")
    row = rec.method("max")
    assert row.qdq_model_file == str(built) and row.qdq_model_sha256 == sha256_file(built)
    assert not list(run.rglob("*.onnx"))
    assert rec.statistics_seconds != 9.0  # statistics collected here: its own time, not a given one
    assert rec.best_method == best_method(rec.methods)
    assert rec.method(rec.best_method).agreement == max(m.agreement for m in rec.methods)
