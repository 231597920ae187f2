"""Disk: a run folder holds records and the report (models stay once in the cache, referred to
by path and sha256); ``--keep-models`` copies them in; ``workbench cache --size/--clear``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from tests.tiny_bert import make_tiny_hf_classifier
from workbench.cli import main

pytest.importorskip("torch", reason="the user-model path needs torch (extra: torch)")
pytestmark = pytest.mark.filterwarnings("ignore")
LIMIT = 10_000_000  # bytes a default run folder stays under


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HF classifier on 120 test / 140 calibration Rotten Tomatoes rows, comparing two
    calibration methods (so the comparison's Q/DQ models are made too)."""
    from workbench.data.datasets import load_rotten_tomatoes

    d = tmp_path_factory.mktemp("disk")
    model = make_tiny_hf_classifier(d / "model", ["fresh", "rotten"], seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(260))
    df = pd.DataFrame({"sentence": ds["text"], "y": ["rotten", "fresh"] * 130})
    df.iloc[:120].to_csv(d / "val.csv", index=False)
    df.iloc[120:].to_csv(d / "calib.csv", index=False)
    exp = d / "experiment.toml"
    args = ["init", "--model", str(model), "--test", str(d / "val.csv"), "--calibration",
            str(d / "calib.csv"), "--text-column", "sentence", "--label-column", "y"]  # fmt: skip
    assert main([*args, "--out", str(exp)]) == 0
    spec = tomllib.loads(exp.read_text(encoding="utf-8"))
    spec["calibration"]["compare"] = ["max", "entropy"]
    exp.write_text(tomli_w.dumps(spec), encoding="utf-8")
    return exp


def _run(exp: Path, run_id: str, *extra: str) -> Path:
    reports = exp.parent / "reports"
    code = main(["run", str(exp), "--quick", "--reports", str(reports), "--run-id", run_id,
                 "--no-progress", *extra])  # fmt: skip
    assert code in (0, 1, 4)  # a random model may fail its gate: still a complete run
    return reports / run_id


@pytest.mark.slow
def test_default_run_folder_is_small_and_refers_to_the_cache(experiment, tmp_path):
    from workbench.fileio import cache_root, sha256_file
    from workbench.results.calibration import COMPARISON_FILE, CalibrationComparison
    from workbench.results.records import load_record, load_run

    run_dir = _run(experiment, "small")
    assert _folder_size(run_dir) < LIMIT and not list(run_dir.rglob("*.onnx"))
    run = load_run(run_dir)
    static = run.build("ort-int8-static")
    assert Path(static.model_path).is_relative_to(cache_root())
    assert sha256_file(static.model_path) == static.model_sha256
    cmp = load_record(CalibrationComparison, run_dir / COMPARISON_FILE)
    row = cmp.method("max")
    assert row.qdq_model_sha256 == static.model_sha256  # the method table's model is the build's
    assert row.accuracy == pytest.approx(static.accuracy.accuracy)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "again.html")]) == 0
    html = (tmp_path / "again.html").read_text(encoding="utf-8")
    assert 'id="summary-table"' in html and ">= ort-int8-static</span>" in html


@pytest.mark.slow
def test_keep_models_copies_them_into_the_run(experiment):
    from workbench.fileio import sha256_file
    from workbench.results.calibration import COMPARISON_FILE, CalibrationComparison
    from workbench.results.records import load_record, load_run

    run_dir = _run(experiment, "kept", "--keep-models")
    run = load_run(run_dir)
    for name in ("ort-fp32", "ort-int8-static", "ort-int8-dynamic"):
        b = run.build(name)
        path = Path(b.model_path)
        assert path.parent == (run_dir / "models").resolve() and path.is_file()
        assert sha256_file(path) == b.model_sha256
    cmp = load_record(CalibrationComparison, run_dir / COMPARISON_FILE)
    for m in cmp.methods:
        assert not Path(m.qdq_model_file).is_absolute()
        assert sha256_file(run_dir / m.qdq_model_file) == m.qdq_model_sha256


def test_cache_size_and_clear(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    (cache / "builds" / "qdq" / "k1").mkdir(parents=True)
    (cache / "builds" / "qdq" / "k1" / "model.onnx").write_bytes(b"x" * 3000)
    (cache / "tables").mkdir()
    (cache / "tables" / "max.json").write_bytes(b"{}" * 100)
    (cache / "notes.txt").write_text("the user's own file")
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    assert main(["cache", "--size"]) == 0
    out = capsys.readouterr().out
    assert "3.0 kB  builds" in out and "200 B  tables" in out and "other" in out
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["cache", "--clear"]) == 2  # not a terminal and no --yes: nothing removed
    assert "--yes" in capsys.readouterr().err and (cache / "builds").is_dir()
    assert main(["cache", "--clear", "--yes"]) == 0
    assert "removed 3.2 kB" in capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]  # never what is not ours
