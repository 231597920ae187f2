"""Faults 1 and 2: names that become paths, and folders the OS refuses, end in one `error:` line
with exit 2 before any expensive stage (nothing is written to the cache or outside its root)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import POLICY, cli, error_line, experiment_toml, run_args
from workbench.errors import ConfigError
from workbench.experiment.rundir import check_name, inside

BAD_RUN_IDS = ["../../evil", "/tmp/abs-run", "a/b/c", ".", "..", "", " x", ".hidden"]
BAD_RUN_IDS += ["a\\b", "x\0y", "x" * 200]
needs_sys = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/sys/kernel").is_dir(),
    reason="uses /sys, a folder nobody may create files in (Linux only)",
)
not_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits"
)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    return cache


def _nothing_built(cache: Path) -> bool:
    """No stage ran: the cache holds no model, export, quantized model, table or evaluation."""
    return not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_run_id_must_be_one_safe_component(run_id, user_dir, tmp_path, fresh_cache, capsys):
    reports = tmp_path / "work" / "reports"
    code, err = cli(run_args(user_dir, reports, run_id), capsys)
    line = error_line(err)
    assert code == 2 and "--run-id" in line and "plain folder/file name" in line
    assert not reports.exists()  # nothing created, not even the reports folder
    assert not (tmp_path / "evil").exists() and not Path("/tmp/abs-run").exists()
    assert _nothing_built(fresh_cache)


def test_build_name_that_escapes_is_refused(user_dir, tmp_path, fresh_cache, capsys):
    build = '[[build]]\nbackend = "onnxruntime"\nprecision = "fp32"\nname = "../../evil"\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(experiment_toml(user_dir / "model", build).replace("policy.toml", "p.toml"))
    (tmp_path / "p.toml").write_text((user_dir / "policy.toml").read_text())
    for name in ("val.csv", "calib.csv"):
        shutil.copy(user_dir / name, tmp_path / name)
    code, err = cli(["run", str(exp), "--reports", str(tmp_path / "r"), "--no-gate"], capsys)
    assert code == 2 and "build name '../../evil'" in error_line(err)
    assert _nothing_built(fresh_cache)


def test_inside_follows_symlinks(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "root", tmp_path / "root" / "ok", "x") == tmp_path / "root" / "ok"
    with pytest.raises(ConfigError, match="outside"):
        inside(tmp_path / "root", tmp_path / "root" / "link" / "elsewhere", "run directory")
    for good in ("nightly", "2025-01-01_run.3", "r+1=2"):
        assert check_name(good, "x") == good


def _reports_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {
        "file": (str(a_file), "is a file, not a directory"),
        "under-a-file": (str(a_file / "reports"), "which is a file"),
    }


@pytest.mark.parametrize("case", ["file", "under-a-file"])
def test_reports_folder_that_is_a_file(case, user_dir, tmp_path, fresh_cache, capsys):
    reports, message = _reports_cases(tmp_path)[case]
    code, err = cli(run_args(user_dir, Path(reports), "r"), capsys)
    assert code == 2 and message in error_line(err) and "--reports" in error_line(err)
    assert _nothing_built(fresh_cache)


@needs_sys
def test_reports_folder_on_a_read_only_filesystem(user_dir, fresh_cache, capsys):
    code, err = cli(run_args(user_dir, Path("/sys/kernel/wb-reports"), "r"), capsys)
    assert code == 2 and "not writable" in error_line(err)
    assert _nothing_built(fresh_cache)


@not_root
def test_reports_folder_without_write_permission(user_dir, tmp_path, fresh_cache, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = cli(run_args(user_dir, ro / "reports", "r"), capsys)
    finally:
        ro.chmod(0o755)
    assert code == 2 and "not writable (Permission denied)" in error_line(err)
    assert _nothing_built(fresh_cache)


def test_cache_that_is_a_file(user_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache-file"
    cache.write_text("x")
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    code, err = cli(run_args(user_dir, tmp_path / "reports", "r"), capsys)
    line = error_line(err)
    assert code == 2 and "WORKBENCH_CACHE" in line and "is a file" in line
    assert not (tmp_path / "reports").exists()


@needs_sys
def test_cache_on_a_read_only_filesystem(user_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", "/sys/kernel/wb-cache")
    code, err = cli(run_args(user_dir, tmp_path / "reports", "r"), capsys)
    assert code == 2 and "WORKBENCH_CACHE" in error_line(err)


def test_calibration_sets_folder_that_is_a_file(user_dir, tmp_path, fresh_cache, capsys):
    args = run_args(user_dir, tmp_path / "reports", "r")
    a_file = tmp_path / "calib-file"
    a_file.write_text("x")
    args[args.index("--calibration-sets") + 1] = str(a_file)
    code, err = cli(args, capsys)
    assert code == 2 and "--calibration-sets" in error_line(err)
    assert _nothing_built(fresh_cache)


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "reports" / run.name
    shutil.copytree(run, dst)
    return dst


def test_report_on_a_csv_file(user_dir, capsys):
    code, err = cli(["report", str(user_dir / "val.csv")], capsys)
    assert code == 2 and "not a run directory" in error_line(err)


@pytest.mark.parametrize("target", ["dir", "under-file", "sys"])
def test_report_out_that_cannot_be_written(target, done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    out = {"dir": str(tmp_path), "under-file": str(a_file / "r.html"), "sys": "/sys/kernel/r.html"}
    if target == "sys" and not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys on this platform")
    before = (run / "report.html").read_bytes()
    code, err = cli(["report", str(run), "--out", out[target]], capsys)
    assert code == 2 and "--out" in error_line(err)
    assert (run / "report.html").read_bytes() == before


@pytest.mark.parametrize("target", ["file", "sys"])
def test_gate_out_that_cannot_be_written(target, done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    if target == "sys" and not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys on this platform")
    out = str(a_file) if target == "file" else "/sys/kernel/gate-out"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    args = ["gate", "--baseline", f"{run}/ort-fp32", "--candidate", f"{run}/ort-int8-dynamic"]
    code, err = cli([*args, "--policy", str(policy), "--out", out], capsys)
    assert code == 2 and "--out folder" in error_line(err)
    assert a_file.read_text() == "x"


@needs_sys
def test_os_errors_anywhere_are_one_line(user_dir, capsys):
    """The CLI's last net: an OSError from any command is one line and exit 2, not a traceback."""
    args = ["init", "--model", str(user_dir / "model"), "--test", str(user_dir / "val.csv")]
    code, err = cli([*args, "--out", "/sys/kernel/wb-experiment.toml"], capsys)
    line = error_line(err)
    assert code == 2 and "/sys/kernel" in line


@pytest.mark.parametrize(
    ("text", "name"),
    [("20250101-120000-my reviews (v2)", "20250101-120000-my-reviews-v2"), ("../..", "run"),
     ("critiques-été", "critiques--t"), ("a/b", "a-b")],
)  # fmt: skip
def test_default_run_ids_from_data_names_are_made_safe(text, name):
    from workbench.experiment.rundir import check_run_id, safe_name

    assert safe_name(text) == name and check_run_id(safe_name(text)) == name


def test_run_dir_symlinked_outside_the_reports_folder(user_dir, tmp_path, fresh_cache, capsys):
    reports, outside = tmp_path / "reports", tmp_path / "outside"
    reports.mkdir()
    outside.mkdir()
    (reports / "r").symlink_to(outside)
    code, err = cli(run_args(user_dir, reports, "r"), capsys)
    assert code == 2 and "outside" in error_line(err)
    assert list(outside.iterdir()) == [] and _nothing_built(fresh_cache)
