"""``workbench calibrate``: the calibration stage of an experiment, methods side by side."""

from __future__ import annotations

import json

import pytest

from workbench.calibration.trt_cache import read_trt_cache
from workbench.cli import main
from workbench.errors import ConfigError
from workbench.experiment.calibrate_methods import parse_methods


def test_parse_methods_expands_percentile():
    assert parse_methods("entropy, percentile,max") == [
        "entropy",
        "percentile-99.9",
        "percentile-99.99",
        "percentile-99.999",
        "max",
    ]
    with pytest.raises(ConfigError, match="did you mean 'mse'"):
        parse_methods("entropy,mes")


def test_tables_only_run(user_experiment, tmp_path, capsys):
    args = ["calibrate", str(user_experiment), "--methods", "entropy,max", "--no-compare",
            "--exclude", "Gemm", "--reports", str(tmp_path), "--run-id", "c",
            "--calibration-sets", str(tmp_path / "sets")]  # fmt: skip
    assert main(args) == 0
    out = tmp_path / "c" / "calibration"
    for m in ("entropy", "max"):
        for ext in ("json", "calib", "qdq.onnx"):
            assert (out / f"{m}.{ext}").is_file()
    assert read_trt_cache(out / "max.calib").method == "max"  # MinMaxCalibration header
    assert json.loads((out / "max.json").read_text())["method"] == "max"
    assert "entropy:" in capsys.readouterr().out


def test_comparison_is_written_and_printed(user_experiment, tmp_path, capsys):
    args = ["calibrate", str(user_experiment), "--methods", "max,mse", "--reports",
            str(tmp_path), "--run-id", "c", "--calibration-sets",
            str(tmp_path / "sets")]  # fmt: skip
    assert main(args) == 0
    rec = json.loads((tmp_path / "c" / "calibration_comparison.json").read_text())
    assert [m["method"] for m in rec["methods"]] == ["max", "mse"]
    assert rec["n_test"] == 120
    assert "best:" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(user_experiment, tmp_path, capsys):
    assert main(["calibrate", str(user_experiment), "--methods", "kl"]) == 2
    assert main(["calibrate", str(tmp_path / "none.toml")]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2
