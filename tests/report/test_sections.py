"""The report's optional sections read typed records: absent is no section, unreadable a problem."""

from __future__ import annotations

import json
import math

import numpy as np

from tests.results.test_calibration import comparison
from workbench.data.representativeness import TextProfile, assess
from workbench.report.sections import calibration_section, calibset_section
from workbench.results.calibration import COMPARISON_FILE
from workbench.results.records import save_record
from workbench.results.representativeness import REPORT_FILE


def test_calibration_section_from_the_record(tmp_path):
    assert calibration_section(tmp_path) is None
    save_record(comparison(), tmp_path / COMPARISON_FILE)
    sec = calibration_section(tmp_path, {"s" * 64: "ort-int8-static"})
    assert sec is not None and sec["problem"] == ""
    assert [r["method"] for r in sec["rows"]] == ["max", "mse"] == sec["methods"]
    max_row, mse_row = sec["rows"]
    assert math.isclose(max_row["delta"], 0.75 - 0.8) and mse_row["best"] and not max_row["best"]
    assert (max_row["build"], mse_row["build"]) == ("", "ort-int8-static")  # by model sha256
    assert sec["tensors"][0]["sqnr"] == {"max": 18.25, "mse": math.inf}  # null: no noise
    assert sec["tensors"][0]["chart"] and sec["all_tensors"][0]["chart"] is None
    assert sec["summary"]["best_method"] == "mse" and sec["summary"]["per_channel"] is False


def test_unreadable_records_are_a_problem_naming_the_file(tmp_path):
    (tmp_path / COMPARISON_FILE).write_text('{"methods": [')
    (tmp_path / REPORT_FILE).write_text(json.dumps({"schema_version": 3, "verdict": "x"}))
    cal, cs = calibration_section(tmp_path), calibset_section(tmp_path)
    assert cal is not None and COMPARISON_FILE in cal["problem"] and "valid JSON" in cal["problem"]
    assert cs is not None and "is missing" in cs["problem"]


def test_calibset_section_from_the_record(tmp_path):
    assert calibset_section(tmp_path) is None
    rng = np.random.default_rng(0)
    rep = assess(
        TextProfile(rng.integers(5, 20, 128), rng.integers(0, 2, 128)),
        TextProfile(rng.integers(5, 80, 1000), rng.integers(0, 2, 1000)),
        max_length=128,
        label_names=["neg", "pos"],
        target_name="test split",
    )
    save_record(rep, tmp_path / REPORT_FILE)
    sec = calibset_section(tmp_path)
    assert sec is not None and sec["verdict"] == rep.verdict == "not representative"
    assert sec["verdict_class"] == "fail" and sec["chart"]
    assert sec["metrics"]["length_psi"] == rep.length_psi and "schema_version" not in sec["metrics"]
    assert [x["label"] for x in sec["labels"]] == ["neg", "pos"]
    assert sec["lengths"]["target"]["max"] == rep.target_lengths.max
