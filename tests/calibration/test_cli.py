"""``workbench calibrate``: tables-only run on the tiny model and its one-line errors."""

from __future__ import annotations

import pytest

from tests.calibration.conftest import random_texts
from workbench.calibration.trt_cache import read_trt_cache
from workbench.cli import main
from workbench.commands.calibrate import parse_methods
from workbench.errors import ConfigError


@pytest.fixture(scope="module")
def calib_dir(tiny_tokenizer, tmp_path_factory):
    from datasets import Dataset

    from workbench.data.calibset import build_calibration_set

    pool = Dataset.from_dict({"text": random_texts(40, seed=3), "label": [0, 1] * 20})
    root = tmp_path_factory.mktemp("calibsets")
    return build_calibration_set(pool, 24, tiny_tokenizer, strategy="random", root=root).dir


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


def test_tables_only_run(tiny_model, calib_dir, tmp_path, capsys):
    code = main(
        [
            "calibrate", "--model", str(tiny_model.path), "--calibration-set", str(calib_dir),
            "--methods", "entropy,max", "--run-dir", str(tmp_path), "--no-compare",
            "--per-channel", "--exclude", "Gemm",
        ]
    )  # fmt: skip
    assert code == 0
    for m in ("entropy", "max"):
        for ext in ("json", "calib", "qdq.onnx"):
            assert (tmp_path / "calibration" / f"{m}.{ext}").is_file()
    assert read_trt_cache(tmp_path / "calibration" / "max.calib").method == "entropy"
    assert "entropy:" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(tiny_model, calib_dir, tmp_path, capsys):
    base = ["calibrate", "--model", str(tiny_model.path), "--run-dir", str(tmp_path)]
    assert main([*base, "--calibration-set", str(calib_dir), "--methods", "kl"]) == 2
    assert main([*base, "--calibration-set", str(tmp_path / "none"), "--no-compare"]) == 2
    assert main(["calibrate", "--model", str(tmp_path / "m.onnx"), "--no-compare"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 3
