"""The method-comparison record: byte-stable JSON round trip, and older files still read."""

from __future__ import annotations

import json
import math

import pytest

from tests.run_fixtures import provenance
from workbench.errors import ResultsError
from workbench.results.calibration import (
    COMPARISON_FILE,
    CalibrationComparison,
    MethodComparison,
    TensorComparison,
    TensorHistogram,
    load_comparison,
)
from workbench.results.records import save_record


def _method(name: str, accuracy: float, agreement: float) -> MethodComparison:
    return MethodComparison(
        name, f"t-{name}.json", f"c-{name}.cache", f"q-{name}.onnx", name[1] * 64, 40, accuracy,
        agreement, 0.5, 0.99, 0.9, 25.0, 12.0, 0.001,
    )  # fmt: skip


def comparison(schema_version: int = 3) -> CalibrationComparison:
    """A small comparison of two methods on one tensor; mse's SQNR is +inf (no noise)."""
    amax, sqnr = {"max": 8.0, "mse": 2.5}, {"max": 18.25, "mse": math.inf}
    methods = [_method("max", 0.75, 0.9), _method("mse", 0.8, 0.95)]
    tensors = [TensorComparison("a", ["MatMul_1"], 512, 8.0, amax, sqnr, {"max": 0.0}, 6.5)]
    hist = [TensorHistogram("a", [3, 1], [0.0, 4.0, 8.0], 4.0, 8.0, amax, sqnr, 6.5)]
    return CalibrationComparison(
        schema_version, "m.onnx", "c" * 64, "a" * 64, 64, "e" * 64, 40, ["no", "yes"], 0.8,
        methods, "mse", tensors, hist, 16, False, [], 1.5, 300.0, provenance(),
    )  # fmt: skip


def test_round_trip_writes_the_same_bytes(tmp_path):
    first = save_record(comparison(), tmp_path / "a" / COMPARISON_FILE)
    back = load_comparison(tmp_path / "a")  # a run directory or the file itself
    assert math.isnan(back.all_tensors[0].sqnr_db["mse"])  # +inf was saved as null
    again = save_record(back, tmp_path / "b.json")
    assert again.read_bytes() == first.read_bytes()
    assert back.method(back.best_method).accuracy == 0.8


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_older_files_without_the_model_hash_still_load(tmp_path, version):
    data = json.loads(save_record(comparison(version), tmp_path / COMPARISON_FILE).read_text())
    for m in data["methods"]:
        del m["qdq_model_sha256"]  # written before the comparison evaluated the build's own file
    (tmp_path / COMPARISON_FILE).write_text(json.dumps(data))
    back = load_comparison(tmp_path)
    assert [m.qdq_model_sha256 for m in back.methods] == ["", ""]
    assert back.schema_version == version and back.methods[1].agreement == 0.95


def test_the_current_run_schema_is_readable():
    """The comparison is written with the run's SCHEMA_VERSION: a bump must stay readable here."""
    from workbench.results.calibration import READABLE_VERSIONS
    from workbench.results.records import SCHEMA_VERSION

    assert SCHEMA_VERSION in READABLE_VERSIONS


def test_newer_or_incomplete_files_are_refused_with_the_field(tmp_path):
    path = save_record(comparison(99), tmp_path / COMPARISON_FILE)
    with pytest.raises(ResultsError, match="schema_version 99"):
        load_comparison(path)
    data = json.loads(save_record(comparison(), path).read_text())
    del data["all_tensors"][0]["amax"]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"all_tensors\[0\]\.amax is missing"):
        load_comparison(path)
