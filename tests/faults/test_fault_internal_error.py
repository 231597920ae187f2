"""Fault 7 (issue 22), as a class: an unexpected exception in any command exits 70 (never the gate's
1) with one `internal error:` line naming a log file that holds the traceback; a run's goes into
its folder (tests/experiment/test_internal_error.py), others into the cache's logs/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.faults.conftest import cli


def _boom(*args: object, **kwargs: object) -> None:
    raise ZeroDivisionError("a bug")


@pytest.mark.parametrize(
    ("module", "attr", "argv"),
    [
        ("workbench.report.render", "render_report", ["report", "{run}"]),
        ("workbench.experiment.sweep", "load_sweep", ["sweep", "{run}/sweep.toml"]),
        ("workbench.experiment.spec", "load_experiment", ["search", "{run}/x.toml"]),
    ],
    ids=["report", "sweep", "search"],
)
def test_a_bug_in_any_command_exits_70_with_its_traceback_in_a_log(
    module, attr, argv, done_run, tmp_path, monkeypatch, capsys
):
    import importlib

    import workbench.errors

    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    monkeypatch.setattr(workbench.errors, "_output_dir", [])
    monkeypatch.setattr(importlib.import_module(module), attr, _boom)
    code, err = cli([a.format(run=run) for a in argv], capsys)
    assert code == 70, err
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("internal error: ZeroDivisionError: a bug; details in "), err
    log = Path(err.rsplit("details in ", 1)[1])
    assert log.parent == cache / "logs" and "Traceback (most recent call last)" in log.read_text()
    assert (run / "report.html").read_bytes() == (done_run / "report.html").read_bytes()
