"""Issue 14 cases whose fix lies outside this branch's files: each reproduces the failure and is
a strict xfail, so the fix turns it into a failure that says "remove the marker". Cases of the
same list that hold already are plain tests here."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import cli, error_line
from workbench.calibration.table import CalibrationTable
from workbench.calibration.trt_cache import read_trt_cache, write_trt_cache
from workbench.errors import CalibrationError


def _hex(scale: float) -> str:
    return struct.pack(">f", np.float32(scale)).hex()


def _cache(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "model.calib"
    p.write_text("\n".join(["TRT-101601-EntropyCalibration2", *lines]) + "\n")
    return p


def test_a_valid_cache_reads_back(tmp_path):
    """The oracle the cases below break: one line per tensor, amax = scale * 127."""
    table = read_trt_cache(_cache(tmp_path, f"a: {_hex(0.5)}", f"b: {_hex(0.25)}"))
    assert table.amax == pytest.approx({"a": 63.5, "b": 31.75})


def test_trt_cache_path_that_is_a_directory(tmp_path):
    with pytest.raises(CalibrationError):
        read_trt_cache(tmp_path)


def test_trt_cache_with_a_duplicate_tensor(tmp_path):
    with pytest.raises(CalibrationError, match="a"):
        read_trt_cache(_cache(tmp_path, f"a: {_hex(0.5)}", f"a: {_hex(0.01)}"))


@pytest.mark.parametrize("scale", [1.8e-43, 3.0e38])
def test_trt_cache_with_a_denormal_or_huge_scale(scale, tmp_path):
    with pytest.raises(CalibrationError):
        read_trt_cache(_cache(tmp_path, f"a: {_hex(scale)}"))


def test_max_calibration_is_written_with_the_minmax_header(tmp_path):
    table = CalibrationTable(amax={"a": 1.0}, method="max", n_samples=8, model_sha256="",
                             calibration_set_sha256="")  # fmt: skip
    text = write_trt_cache(table, tmp_path / "m.calib").read_text()
    assert text.startswith("TRT-101601-MinMaxCalibration")


def test_report_on_a_run_with_nan_accuracy(done_run, tmp_path, capsys):
    run = tmp_path / "reports" / "nan"
    shutil.copytree(done_run, run)
    record = json.loads((run / "run.json").read_text())
    record["builds"][1]["accuracy"]["accuracy"] = None  # NaN is stored as null
    (run / "run.json").write_text(json.dumps(record))
    code, err = cli(["report", str(run)], capsys)
    assert code == 0, err


def test_garbage_cached_logits_are_rebuilt(done_run, user_dir, tmp_path, capsys):
    import shutil

    import pandas as pd

    from tests.faults.conftest import run_args
    from workbench.fileio import cache_root

    # cached logits are keyed by content: a test file of its own gives this run entries of its own
    own = tmp_path / "user"
    shutil.copytree(user_dir, own)
    pd.read_csv(user_dir / "val.csv").iloc[:-1].to_csv(own / "val.csv", index=False)
    before = set((cache_root() / "evals").glob("*/logits.npy"))
    args = run_args(own, tmp_path / "reports", "g", "--no-gate")
    assert cli(args, capsys)[0] == 0
    made = set((cache_root() / "evals").glob("*/logits.npy")) - before  # keyed by this run's paths
    assert made
    for npy in made:
        npy.write_bytes(b"garbage")
    code, err = cli(args, capsys)
    assert code == 0, err
    import numpy as np

    for npy in made:
        assert np.load(npy).ndim == 2  # rebuilt, not trusted


def test_rows_dropped_from_a_data_file_are_counted_aloud(tmp_path, caplog):
    import logging

    import pandas as pd

    from workbench.data.datasets import load_labelled_file

    texts: list[str | None] = [f"review number {i}" for i in range(40)]
    labels: list[str | None] = ["fresh", "rotten"] * 20
    texts[3:8] = [None] * 5
    labels[20:23] = [None] * 3
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "d.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="workbench"):
        data = load_labelled_file(tmp_path / "d.csv", "text", "label")
    assert len(data.dataset) == 32  # the oracle: 40 rows, 8 without text or label
    assert "8" in caplog.text and "d.csv" in caplog.text


def test_model_with_a_smaller_vocabulary_than_its_tokenizer(user_dir, tmp_path, capsys):
    """Case 8, which holds now: refused in one line before any stage."""
    from tests.faults.conftest import experiment_toml, run_args
    from tests.tiny_bert import make_tiny_hf_classifier

    make_tiny_hf_classifier(tmp_path / "model", ["rotten", "fresh"], vocab_size=50)
    for name in ("val.csv", "calib.csv", "policy.toml"):
        shutil.copy(user_dir / name, tmp_path / name)
    (tmp_path / "exp.toml").write_text(experiment_toml(tmp_path / "model"))
    code, err = cli(run_args(tmp_path, tmp_path / "reports", "v"), capsys)
    assert code == 2 and "vocab" in error_line(err)
