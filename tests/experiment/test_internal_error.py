"""A stage that raises unexpectedly: exit 70, one stderr line, the traceback in the run folder."""

from __future__ import annotations

from pathlib import Path

from workbench.cli import main


def test_a_stage_that_raises_exits_70_with_a_log_in_the_run_folder(
    user_experiment, tmp_path, capsys, monkeypatch
):
    import workbench.errors
    import workbench.experiment.engine as engine

    def broken_stage(*args, **kwargs):
        raise ZeroDivisionError("a bug in a stage")

    monkeypatch.setattr(workbench.errors, "_output_dir", [])
    monkeypatch.setattr(engine, "_measure_all", broken_stage)
    reports = tmp_path / "reports"
    sets = str(tmp_path / "sets")
    code = main(["run", str(user_experiment), "--quick", "--no-progress", "--run-id", "r1",
                 "--reports", str(reports), "--calibration-sets", sets])  # fmt: skip
    assert code == 70
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("internal error: ZeroDivisionError: a bug in a stage; details in ")
    log = Path(err.rsplit("details in ", 1)[1])
    assert log.parent == reports / "r1" and log.is_file()
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "broken_stage" in text
