"""Sweeps: sweep files expand into cells; a 2 x 2 grid on a tiny model runs on local Ray
(2 CPUs), survives being killed midway, and records a failing cell without stopping."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.experiment.sweep import cell_key, load_sweep, parse_sweep

NAMES = ["rotten", "fresh"]
EXPERIMENT = """
name = "tiny"
[model]
path = "model"
[data]
test = "val.csv"
calibration = "calib.csv"
text_column = "sentence"
label_column = "y"
max_length = 64
[calibration]
compare = []
[evaluate]
iterations = 3
warmup = 1
shapes = [[1, 32]]
[gate]
baseline = "ort-fp32"
candidates = ["ort-int8-static"]
[[build]]
backend = "onnxruntime"
precision = "fp32"
[[build]]
backend = "onnxruntime"
precision = "int8-static"
"""
# n = 5000 is larger than the 100-row calibration pool: those two cells fail when they run.
SWEEP = """
name = "grid"
base = "base/experiment.toml"
[axes]
calibration.method = ["entropy", "max"]
calibration.n = [32, 5000]
"""


def _write_base(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.toml").write_text(EXPERIMENT, encoding="utf-8")
    return folder / "experiment.toml"


# ----------------------------------------------------------------- sweep files (no Ray)
def test_axes_expand_into_cells_with_paths_from_the_base_file(tmp_path: Path) -> None:
    _write_base(tmp_path / "base")
    (tmp_path / "sweep.toml").write_text(SWEEP, encoding="utf-8")
    spec = load_sweep(tmp_path / "sweep.toml")
    assert [dict(c.params) for c in spec.cells] == [
        {"calibration.method": m, "calibration.n": n}
        for m in ("entropy", "max")
        for n in ("32", "5000")
    ]
    assert len({c.key for c in spec.cells}) == 4
    for c in spec.cells:
        exp = c.experiment
        assert exp.calibration.method == c.params[0][1]
        assert exp.calibration.n == int(c.params[1][1])
        # the base's relative paths resolve against the base file's folder, not the sweep's
        assert exp.model.path == str((tmp_path / "base" / "model").resolve())
        assert exp.data.test == str((tmp_path / "base" / "val.csv").resolve())
        assert [b.name for b in exp.builds] == ["ort-fp32", "ort-int8-static"]
        assert c.times_cpu and not c.needs_gpu


def test_build_axis_adds_to_the_base_builds_and_inline_experiment_overrides(
    tmp_path: Path,
) -> None:
    _write_base(tmp_path)
    data = {
        "base": "experiment.toml",
        "experiment": {"seed": 7, "evaluate": {"iterations": 5}},
        "axes": {
            "build": [
                {"backend": "onnxruntime", "precision": "int8-dynamic"},
                {"backend": "pytorch", "device": "cuda", "precision": "fp16"},
            ],
            "model.path": ["model", "other/model2"],
        },
    }
    spec = parse_sweep(data, tmp_path, "s.toml")
    assert len(spec.cells) == 4
    first, gpu = spec.cells[0], spec.cells[2]
    assert [b.name for b in first.experiment.builds][-1] == "ort-int8-dynamic"
    assert [b.name for b in gpu.experiment.builds][-1] == "torch-cuda-fp16"
    assert gpu.needs_gpu and not first.needs_gpu
    assert first.experiment.seed == 7 and first.experiment.evaluate.iterations == 5
    assert dict(spec.cells[1].params) == {"build": "ort-int8-dynamic", "model.path": "model2"}
    assert spec.cells[1].experiment.model.path == str(tmp_path / "other" / "model2")


def test_cell_key_is_content_not_name(tmp_path: Path) -> None:
    _write_base(tmp_path)
    a = parse_sweep({"base": "experiment.toml", "name": "a"}, tmp_path).cells[0]
    b = parse_sweep({"base": "experiment.toml", "name": "b"}, tmp_path).cells[0]
    c = parse_sweep({"base": "experiment.toml", "experiment": {"seed": 1}}, tmp_path).cells[0]
    assert a.name != b.name and a.key == b.key == cell_key(b.experiment)
    assert c.key != a.key


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"axes": {"seed": [1]}}, "name a base experiment"),
        ({"base": "experiment.toml", "axis": {}}, "unknown key(s) axis"),
        ({"base": "experiment.toml", "axes": {"seed": []}}, "non-empty array"),
        ({"base": "experiment.toml", "axes": {"seed": [1, 1]}}, "same experiment"),
        ({"base": "missing.toml"}, "does not exist"),
        ({"base": "experiment.toml", "axes": {"calibration.methd": ["max"]}}, "'method'"),
        ({"base": "experiment.toml", "cpus_per_cell": 0}, "cpus_per_cell"),
    ],
)
def test_bad_sweep_files_fail_with_one_line(tmp_path: Path, data: dict, message: str) -> None:
    _write_base(tmp_path)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sweep(data, tmp_path, "s.toml")


def test_cluster_without_timing_resource_is_refused_before_any_cell(tmp_path: Path) -> None:
    from workbench.errors import BackendUnavailableError
    from workbench.experiment.sweep_run import _check_resources

    _write_base(tmp_path)
    gpu_build = {"backend": "pytorch", "device": "cuda", "precision": "fp16"}
    data = {"base": "experiment.toml", "axes": {"build": [gpu_build]}}
    cells = list(parse_sweep(data, tmp_path).cells)
    with pytest.raises(ConfigError, match="timing"):
        _check_resources({"CPU": 8.0}, cells, "ray://head:10001")
    with pytest.raises(BackendUnavailableError, match="no GPU"):
        _check_resources({"CPU": 8.0, "timing": 1.0}, cells, "auto")
    _check_resources({"CPU": 8.0, "timing": 1.0, "GPU": 2.0}, cells, "auto")


# ----------------------------------------------------------------- a real sweep on Ray
@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sweep.toml over a tiny HF classifier with a 100-row test and 100-row calibration CSV."""
    pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
    pytest.importorskip("ray", reason="sweeps run on Ray (extra: sweep)")
    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("sweep")
    base = root / "base"
    _write_base(base)
    make_tiny_hf_classifier(base / "model", ["fresh", "rotten"], seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(200))
    df = pd.DataFrame({"sentence": ds["text"], "y": [NAMES[i] for i in ds["label"]]})
    df.iloc[:100].to_csv(base / "val.csv", index=False)
    df.iloc[100:].to_csv(base / "calib.csv", index=False)
    (root / "sweep.toml").write_text(SWEEP, encoding="utf-8")
    return root / "sweep.toml"


def _kill_after_first_finished_cell(sweep: Path, out: Path, env: dict[str, str]) -> list[Path]:
    """Start `workbench sweep` in its own session; SIGKILL it (and its Ray) once a cell is done."""
    cmd = [sys.executable, "-m", "workbench", "sweep", str(sweep), "--out", str(out),
           "--num-cpus", "2", "--no-report"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    done: list[Path] = []
    deadline = time.monotonic() + 600  # a guard against a hang, not a speed limit
    try:
        while not done and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            done = [
                f
                for f in out.glob("cells/*/cell.json")
                if json.loads(f.read_text(encoding="utf-8"))["status"] == "done"
            ]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert done, "no cell finished before the sweep was killed"
    return done


@pytest.mark.slow
def test_sweep_on_local_ray_resumes_and_records_failures(
    sweep_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.cli import main
    from workbench.results.records import load_run
    from workbench.results.sweep import load_sweep_result, sweep_frame

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    finished = _kill_after_first_finished_cell(sweep_file, out, env)
    before = {f.parent.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in finished}
    runs_before = {k: (out / "cells" / k / "run.json").stat().st_mtime_ns for k in before}
    assert not (out / "sweep.json").exists()  # killed before the end

    mlruns = tmp_path / "mlruns"
    args = ["sweep", str(sweep_file), "--out", str(out), "--num-cpus", "2", "--retries", "1"]
    mlflow = importlib.util.find_spec("mlflow") is not None
    code = main([*args, "--mlflow", str(mlruns)] if mlflow else args)
    assert code == 1  # two cells failed: exit 1, the others still ran

    sweep = load_sweep_result(out)
    spec = load_sweep(sweep_file)
    assert [c.key for c in sweep.cells] == [c.key for c in spec.cells]
    # resumed: every cell finished before the kill is reused, byte for byte
    assert set(before) <= set(sweep.reused)
    for key, (mtime, data) in before.items():
        cell_json = out / "cells" / key / "cell.json"
        assert cell_json.stat().st_mtime_ns == mtime and cell_json.read_bytes() == data
        assert (out / "cells" / key / "run.json").stat().st_mtime_ns == runs_before[key]
    by_n = {n: [c for c in sweep.cells if c.params["calibration.n"] == n] for n in ("32", "5000")}
    for c in by_n["5000"]:  # failed, with the error, retried once, nothing measured
        assert c.status == "failed" and c.attempts == 2 and not c.builds
        assert "larger than the calibration pool" in c.error and c.key not in sweep.reused
    for c in by_n["32"]:
        _check_done_cell(out, c, load_run(out / c.run_dir))
    assert sweep.cluster == "local" and sweep.num_cpus == 2
    df = sweep_frame(sweep)
    assert len(df) == 2 * 2 + 2  # two builds per finished cell, one row per failed cell
    assert set(df["calibration.method"]) == {"entropy", "max"}
    html = (out / "sweep.html").read_text(encoding="utf-8")
    for c in by_n["32"]:
        assert f'href="{c.report}"' in html and (out / c.report).is_file()
    assert "By calibration.method" in html and "By calibration.n" in html
    assert "larger than the calibration pool" in html and "pareto-table" in html
    if mlflow:
        _check_mlflow(sweep, out, mlruns)


def _check_mlflow(sweep, out: Path, mlruns: Path) -> None:
    """One MLflow run per cell with its params, metrics and report; logging again adds none."""
    from mlflow.tracking import MlflowClient

    from workbench.experiment.sweep_tracking import KEY_TAG, log_sweep, tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri(str(mlruns)))
    exp = client.get_experiment_by_name("grid")
    runs = {r.data.tags[KEY_TAG]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {c.key for c in sweep.cells}
    for c in sweep.cells:
        r = runs[c.key]
        assert r.data.params["calibration.method"] == c.params["calibration.method"]
        if c.status == "done":
            b = c.builds[1]
            assert r.data.metrics[f"{b.name}.accuracy"] == pytest.approx(b.accuracy)
            assert r.info.status == "FINISHED"
            names = [a.path for a in client.list_artifacts(r.info.run_id)]
            assert names == ["report.html"]
        else:
            assert r.info.status == "FAILED" and "calibration pool" in r.data.params["error"]
    assert log_sweep(sweep, out, str(mlruns)) == 0


def _check_done_cell(out: Path, c, run) -> None:
    """A finished cell's record against its run and its predictions (recomputed here)."""
    from workbench.results.stats import wilson_interval

    assert c.status == "done" and c.error == "" and c.baseline == "ort-fp32"
    assert run.experiment.calibration.method == c.params["calibration.method"]
    assert run.calibration is not None and run.calibration.n_samples == 32
    assert [b.name for b in c.builds] == ["ort-fp32", "ort-int8-static"]
    assert c.placement is not None and c.placement.timing and c.placement.num_cpus == 1
    run_dir = out / c.run_dir
    preds = {b.name: pd.read_parquet(run_dir / b.accuracy.predictions_file) for b in run.builds}
    base = preds["ort-fp32"]
    for b in c.builds:
        p = preds[b.name]
        acc = float(np.mean(p["pred"] == p["label"]))
        assert b.accuracy == pytest.approx(acc)
        assert (b.accuracy_low, b.accuracy_high) == pytest.approx(
            wilson_interval(round(acc * len(p)), len(p))
        )
        assert b.agreement == pytest.approx(float(np.mean(p["pred"] == base["pred"])))
        assert b.drop == pytest.approx(float(np.mean(base["pred"] == base["label"])) - acc)
        assert b.drop_low <= b.drop + 1e-12 and b.drop <= b.drop_high + 1e-12
        assert b.p50_ms is not None and b.p50_ms > 0 and b.latency_shape == "1x32"
