"""Faults 4 and 10 with real processes: kill -9 at a random stage then a rerun gives the same
records; two runs share one cache; Ctrl-C ends with exit 130 and nothing half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.faults.conftest import child, run_args
from workbench.fileio import MANIFEST_FILE, verify_entry
from workbench.results.records import load_run
from workbench.results.serde import to_dict

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and flock are POSIX")
# A cache folder appears when its stage starts: killing then lands inside that stage.
STAGE_MARKERS = ["onnx", "tables", "quantized", "evals", "latency"]


def _wait_for(proc: subprocess.Popen[str], path: Path, timeout: float = 60.0) -> bool:
    """True once ``path`` exists; False if the process ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout}s")


def _finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _essence(run_dir: Path) -> dict[str, object]:
    """What a run measured, minus the timing: test set, per-build model, accuracy, predictions."""
    run = load_run(run_dir)
    out: dict[str, object] = {"test": run.test_set_sha256, "labels": run.labels}
    for b in run.builds:
        assert b.accuracy is not None
        acc = to_dict(b.accuracy)
        preds = pd.read_parquet(run_dir / acc.pop("predictions_file"))
        cols = zip(preds["idx"], preds["label"], preds["pred"], preds["logits"], strict=True)
        rows = [(int(i), int(y), int(p), [float(x) for x in lg]) for i, y, p, lg in cols]
        out[b.name] = (b.model_sha256, acc, rows)
    return out


def _leftovers(*roots: Path) -> list[Path]:
    return [p for r in roots for p in r.rglob("*") if p.name.endswith((".tmp", ".partial"))]


def _entries_verify(cache: Path) -> None:
    for manifest in cache.rglob(MANIFEST_FILE):
        assert verify_entry(manifest.parent) == "", manifest.parent


def test_kill_9_at_a_random_stage_then_rerun_beside_a_second_run(user_dir, done_run, tmp_path):
    """A run killed mid-stage, then its rerun and another run at once on the same cache."""
    seed = int(os.environ.get("WB_FAULT_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    stage = rng.choice(STAGE_MARKERS)
    where = f"seed {seed}: kill -9 when the {stage!r} stage starts"
    cache, reports = tmp_path / "cache", tmp_path / "reports"
    proc = child(run_args(user_dir, reports, "k"), cache)
    if _wait_for(proc, cache / stage):
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    procs = [child(run_args(user_dir, reports, name), cache) for name in ("k", "other")]
    for code, err in [_finish(p) for p in procs]:
        assert code in (0, 1), f"{where}\n{err}"
        assert "Traceback" not in err, where
    assert _essence(reports / "k") == _essence(reports / "other") == _essence(done_run), where
    assert _leftovers(reports, cache) == [], where
    _entries_verify(cache)


def test_ctrl_c_exits_130_and_leaves_nothing_half_written(user_dir, tmp_path):
    cache, reports = tmp_path / "cache", tmp_path / "reports"
    proc = child(run_args(user_dir, reports, "c"), cache, start_new_session=True)
    assert _wait_for(proc, cache / "onnx"), "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    code, err = _finish(proc)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert _leftovers(reports) == []
    assert (
        not (reports / "c" / "run.json").exists() and not (reports / "c" / "report.html").exists()
    )
