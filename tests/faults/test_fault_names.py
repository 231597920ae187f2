"""Faults 1 and 6 (issue 22): every name that becomes a path goes through one validator, and
every argument check comes before the first write — sweep names, calibration-set names, sweep
resources, search options; `search --out` holds the run folders' lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.conftest import cli, error_line
from workbench.errors import ConfigError
from workbench.fileio import check_name, check_path_arg

BAD_NAMES = ["../../../evil", "/tmp/abs-sweep", "a/b", "a\\b", "x\0y", "..", ".", "", ".hidden"]
BAD_NAMES += ["x\ny", "x" * 200]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.parametrize("name", BAD_NAMES)
def test_one_validator_refuses_every_escaping_name(name):
    with pytest.raises(ConfigError, match="not a plain folder/file name"):
        check_name(name, "sweep name")


@pytest.mark.parametrize("name", ["grid", "n512-s0", "a.b_c+d=e", "X" * 128])
def test_plain_names_pass(name):
    assert check_name(name, "sweep name") == name


@pytest.mark.parametrize("path", ["", "  ", "a\0b", "out\nseed = 99", "x\x1b[31m"])
def test_path_arguments_with_control_characters_are_refused(path):
    with pytest.raises(ConfigError, match="control character"):
        check_path_arg(path, "--out")


def _sweep_file(folder: Path, user_dir: Path, name: str | None) -> Path:
    """A sweep over the fault suite's experiment, named ``name`` (TOML basic-string escaped)."""
    escaped = None if name is None else name.replace("\\", "\\\\").replace('"', '\\"')
    escaped = None if escaped is None else escaped.replace("\0", "\\u0000").replace("\n", "\\n")
    head = "" if escaped is None else f'name = "{escaped}"\n'
    text = f'{head}base = "{user_dir / "exp.toml"}"\n[axes]\ncalibration.n = [8, 16]\n'
    path = folder / "sw.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["../../../evil", "/tmp/abs-sweep", "a/b", "a\\b", "x\0y", ".."])
@pytest.mark.parametrize("with_out", [False, True])
def test_sweep_name_that_escapes_is_refused_before_anything_is_written(
    name, with_out, user_dir, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    sweep = _sweep_file(tmp_path, user_dir, name)
    out = ["--out", str(work / "mine")] if with_out else []
    code, err = cli(["sweep", str(sweep), "--no-report", *out], capsys)
    line = error_line(err)
    assert code == 2 and "name" in line and "plain folder/file name" in line
    assert _files(tmp_path) == [sweep]  # nothing written anywhere, inside or outside
    assert not Path("/tmp/abs-sweep").exists()


def test_sweep_folder_symlinked_out_of_reports_is_refused(user_dir, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    work = tmp_path / "work"
    (work / "reports" / "sweeps").mkdir(parents=True)
    (work / "reports" / "sweeps" / "grid").symlink_to(elsewhere)
    monkeypatch.chdir(work)
    sweep = _sweep_file(tmp_path, user_dir, "grid")
    code, err = cli(["sweep", str(sweep), "--no-report"], capsys)
    line = error_line(err)
    assert code == 2 and "outside" in line and "refusing to write" in line
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize("flag", [["--num-cpus", "0"], ["--num-cpus", "-2"], ["--num-gpus", "-1"]])
def test_sweep_resources_out_of_range_are_refused(flag, user_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = _sweep_file(tmp_path, user_dir, "grid")
    code, err = cli(["sweep", str(sweep), "--no-report", *flag], capsys)
    assert code == 2 and flag[0] in error_line(err)
    assert _files(tmp_path) == [sweep]


def test_sweep_without_a_name_takes_a_safe_one_from_the_file_name(user_dir, tmp_path):
    from workbench.experiment.sweep import load_sweep

    path = _sweep_file(tmp_path, user_dir, None)
    odd = path.rename(tmp_path / "my grid (v2).toml")
    assert load_sweep(odd).name == "my-grid-v2"


@pytest.mark.parametrize("name", ["../evil", "/tmp/abs-set", "a/b", ".."])
def test_calibset_name_that_escapes_is_refused(name, user_dir, tmp_path, capsys):
    root = tmp_path / "sets"
    args = ["calibset", "--data", str(user_dir / "calib.csv"), "--n", "8", "--root", str(root)]
    code, err = cli([*args, "--model-dir", str(user_dir / "model"), "--name", name], capsys)
    assert code == 2 and "--name" in error_line(err)
    assert not root.exists() and not (tmp_path / "evil").exists()


def _search(user_dir: Path, out: Path, *extra: str) -> list[str]:
    sets = out.parent / "sets"
    args = ["search", str(user_dir / "exp.toml"), "--out", str(out), "--no-progress"]
    return [*args, "--calibration-sets", str(sets), *extra]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--max-float", "-1"], "--max-float -1"),
        (["--ranking", "task", "--max-float", "-3"], "--max-float -3"),
    ],
)
def test_search_option_errors_come_before_the_first_write(
    extra, says, user_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "X"
    code, err = cli(_search(user_dir, out, *extra), capsys)
    assert code == 2 and says in error_line(err)
    assert not out.exists() and not (tmp_path / "sets").exists()


def test_search_out_that_is_a_file_is_refused_up_front(user_dir, tmp_path, capsys):
    out = tmp_path / "X"
    out.write_text("mine")
    code, err = cli(_search(user_dir, out), capsys)
    assert code == 2 and "is a file" in error_line(err)
    assert out.read_text() == "mine" and not (tmp_path / "sets").exists()


HOLD = (
    "import sys, time\n"
    "from workbench.experiment.rundir import lock_dir\n"
    "claim = lock_dir(sys.argv[1], '--out', 'search')\n"
    "print('held', flush=True)\n"
    "time.sleep(300)\n"
)


def test_a_second_search_into_a_locked_folder_is_refused(user_dir, tmp_path, capsys):
    """Another process (a first search) holds the folder's lock: this one exits 2, writes
    nothing, and may use the folder once that process is gone."""
    import subprocess
    import sys

    from tests.faults.conftest import ROOT
    from workbench.experiment.rundir import LOCK_FILE

    out = tmp_path / "X"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, err = cli(_search(user_dir, out, "--max-float", "0"), capsys)
        line = error_line(err)
        assert code == 2 and "in use by another workbench run" in line
        assert f'"pid": {holder.pid}' in line and '"run_id": "search"' in line
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
        assert not (tmp_path / "sets").exists()
    finally:
        holder.kill()
        holder.wait()
    from workbench.experiment.rundir import lock_dir

    with lock_dir(out, "--out", "search"):  # the dead holder's lock is gone with it
        pass


def test_calibrate_checks_the_trt_version_before_calibrating(user_dir, tmp_path, capsys):
    reports, sets = tmp_path / "reports", tmp_path / "sets"
    args = ["calibrate", str(user_dir / "exp.toml"), "--no-compare", "--reports", str(reports)]
    code, err = cli([*args, "--calibration-sets", str(sets), "--trt-version", "ten"], capsys)
    assert code == 2 and "'ten'" in error_line(err)
    assert not reports.exists() and not sets.exists()


@pytest.mark.parametrize("n", ["0", "-5"])
def test_prepare_refuses_a_training_size_below_one_before_training(
    n, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    code, err = cli(["prepare", "--max-train", n], capsys)
    assert code == 2 and f"--max-train {n}" in error_line(err)
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.parametrize("flag", ["--root", "--report-dir"])
def test_calibset_folders_that_are_files_are_refused_before_the_set_is_built(
    flag, user_dir, tmp_path, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    root = tmp_path / "sets"
    folders = {"--root": str(root), "--report-dir": str(tmp_path / "rd"), flag: str(blocker)}
    args = ["calibset", "--data", str(user_dir / "calib.csv"), "--n", "8", "--target", "test"]
    args += ["--model-dir", str(user_dir / "model"), *[x for kv in folders.items() for x in kv]]
    code, err = cli(args, capsys)
    assert code == 2 and str(blocker) in error_line(err)
    assert not root.exists() and blocker.read_text() == "mine"
