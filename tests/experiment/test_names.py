"""Run ids and calibration-set folders are named after the experiment's ``name`` (not its test
file), made safe path components and checked like ``--run-id``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workbench.errors import ConfigError
from workbench.experiment.rundir import calibration_set_name, default_run_id, preflight
from workbench.results.spec import Experiment

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "run_id", "calib"),
    [("sst2 nightly", "20260105-093000-sst2-nightly", "sst2-nightly-stratified-n512-s0"),
     ("../../../evil", "20260105-093000-evil", "evil-stratified-n512-s0"),
     ("grid[n=64]", "20260105-093000-grid-n=64", "grid-n-64-stratified-n512-s0"),
     ("/", "20260105-093000-run", "run-stratified-n512-s0")],
)  # fmt: skip
def test_names_come_from_the_experiment_and_stay_one_component(name, run_id, calib):
    exp = Experiment(name=name)
    assert default_run_id(exp, NOW) == run_id
    assert default_run_id(Experiment(name=name, quick=True), NOW) == run_id + "-quick"
    assert calibration_set_name(exp, 512, "stratified", 0) == calib


def test_preflight_checks_the_default_run_dir(tmp_path):
    """The run id made from the name is checked like --run-id: a foreign folder is refused."""
    reports, sets = tmp_path / "reports", tmp_path / "sets"
    reports.mkdir()
    sets.mkdir()
    exp = Experiment(name="exp")
    run_id = default_run_id(exp, NOW)
    (reports / run_id).mkdir()
    (reports / run_id / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="did not write"):
        preflight(exp, str(reports), str(sets), run_id)


def test_sets_named_after_two_experiments_share_their_tables(user_experiment, tmp_path):
    """Same data, other [name] (e.g. two sweep cells): two set folders, one table entry."""
    from dataclasses import replace

    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    exp = load_experiment(user_experiment)
    exp = replace(exp, calibration=replace(exp.calibration, n=32, compare=()))
    out = []
    for name in ("grid[method=max]", "grid[method=mse]"):
        ws = Workspace.from_experiment(replace(exp, name=name))
        run_dir = tmp_path / name
        run_dir.mkdir()
        out.append(ws.calibrate(run_dir, str(tmp_path / "sets")))
    assert [o.calib_set.dir.name for o in out] == [
        "grid-method-max-stratified-n32-s0",
        "grid-method-mse-stratified-n32-s0",
    ]
    assert out[0].table_file == out[1].table_file  # one statistics pass for both
