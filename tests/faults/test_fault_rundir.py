"""Faults 4, 5 and 6: a run directory is owned by one run at a time and starts clean, a verdict is
shown only for the test set it gated, and a build is never gated against itself by accident."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.faults.conftest import POLICY, cli, error_line, run_args
from workbench.errors import ResultsError
from workbench.experiment.rundir import LOCK_FILE, claim_run_dir
from workbench.gate import load_decision
from workbench.results.records import load_run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "reports" / run.name
    shutil.copytree(run, dst)
    return dst


def _verdict(run: Path) -> str:
    """The verdict report.html opens with: pass, fail or none."""
    found = re.findall(r'data-verdict="(\w+)"', (run / "report.html").read_text(encoding="utf-8"))
    assert len(found) == 1, found
    return found[0]


def _gate_args(run: Path, policy: Path, baseline: str, candidate: str) -> list[str]:
    return ["gate", "--baseline", f"{run}/{baseline}", "--candidate", f"{run}/{candidate}",
            "--policy", str(policy)]  # fmt: skip


def test_rerun_starts_from_a_clean_directory(done_run, user_dir, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    gate = json.loads((run / "gate.json").read_text())
    gate["test_set_sha256"] = "0" * 64  # a verdict about another test set
    (run / "gate.json").write_text(json.dumps(gate))
    (run / "predictions" / "old-build.parquet").write_bytes(b"stale")
    code, err = cli(run_args(user_dir, run.parent, run.name, "--no-gate"), capsys)
    assert code == 0, err
    left = sorted(p.name for p in run.iterdir())
    assert "gate.json" not in left and "gate.md" not in left and "gate-junit.xml" not in left
    assert not (run / "predictions" / "old-build.parquet").exists()
    assert _verdict(run) == "none"
    assert load_run(run).run_id == run.name


def test_folder_with_foreign_files_is_refused_not_emptied(user_dir, tmp_path, capsys):
    mine = tmp_path / "reports" / "mine"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("keep me")
    code, err = cli(run_args(user_dir, mine.parent, "mine"), capsys)
    assert code == 2 and "did not write (thesis.tex)" in error_line(err)
    assert (mine / "thesis.tex").read_text() == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_a_locked_run_directory_is_refused(user_dir, tmp_path, capsys):
    reports = tmp_path / "reports"
    with claim_run_dir(reports, "busy") as claim:
        holder = json.loads((claim.path / LOCK_FILE).read_text())
        code, err = cli(run_args(user_dir, reports, "busy"), capsys)
        line = error_line(err)
        assert code == 2 and "in use by another workbench run" in line
        assert f'"pid": {holder["pid"]}' in line
        assert sorted(p.name for p in claim.path.iterdir()) == [LOCK_FILE]
    code, err = cli(run_args(user_dir, reports, "busy", "--no-gate"), capsys)
    assert code == 0, err  # released: the next run may use it


def test_gate_and_report_wait_for_a_run_in_progress(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with claim_run_dir(run.parent, run.name) as claim:
        for name, data in before.items():  # a rerun has started and not yet rewritten them
            if name != LOCK_FILE:
                (claim.path / name).write_bytes(data)
        for args in (["report", str(run)], _gate_args(run, policy, "ort-fp32", "ort-int8-dynamic")):
            code, err = cli(args, capsys)
            assert code == 2 and "in use by another workbench run" in error_line(err)
    code, err = cli(["report", str(run)], capsys)
    assert code == 0, err


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    """flock dies with its process; the lock *file* left behind only marks the folder as ours."""
    reports = tmp_path / "reports"
    claim = claim_run_dir(reports, "r")
    (claim.path / "run.json").write_text("{}")
    claim.release()
    with claim_run_dir(reports, "r") as again:
        assert sorted(p.name for p in again.path.iterdir()) == [LOCK_FILE]


def test_stale_gate_json_is_not_shown_as_the_verdict(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    assert load_decision(run / "gate.json").test_set_sha256 == load_run(run).test_set_sha256
    assert _verdict(run) in ("pass", "fail")
    gate = json.loads((run / "gate.json").read_text())
    gate["test_set_sha256"] = "f" * 64
    (run / "gate.json").write_text(json.dumps(gate))
    with pytest.raises(ResultsError, match="stale"):
        load_decision(run / "gate.json")
    code, err = cli(["report", str(run)], capsys)
    assert code == 0, err
    html = (run / "report.html").read_text(encoding="utf-8")
    assert _verdict(run) == "none" and "Gate PASSED" not in html and "is stale" in html


def test_gate_json_of_the_old_schema_is_not_shown(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    gate = json.loads((run / "gate.json").read_text())
    gate["schema_version"] = 1
    del gate["test_set_sha256"]
    (run / "gate.json").write_text(json.dumps(gate))
    code, err = cli(["report", str(run)], capsys)
    assert code == 0, err
    assert _verdict(run) == "none"


def test_gate_refuses_a_build_against_itself(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    before = (run / "gate.json").read_bytes()
    for ref in ("ort-fp32", "ort-fp32/"):
        code, err = cli(_gate_args(run, policy, "ort-fp32", ref), capsys)
        assert code == 2 and "same build" in error_line(err) and "--allow-same" in err
    # the same build through another spelling of the same folder
    other = tmp_path / "reports" / ".." / "reports" / run.name
    code, err = cli(
        ["gate", "--baseline", f"{run}/ort-fp32", "--candidate", f"{other}/ort-fp32",
         "--policy", str(policy)], capsys)  # fmt: skip
    assert code == 2 and "same build" in error_line(err)
    assert (run / "gate.json").read_bytes() == before  # nothing written
    code, err = cli([*_gate_args(run, policy, "ort-fp32", "ort-fp32"), "--allow-same"], capsys)
    assert code == 0, err
    assert load_decision(run / "gate.json").passed


def test_gate_across_runs_of_the_same_build_is_allowed(done_run, tmp_path, capsys):
    """Same build name in two different runs is a regression check, not a self-comparison."""
    a = _copy(done_run, tmp_path)
    b = tmp_path / "reports" / "other"
    shutil.copytree(done_run, b)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    args = ["gate", "--baseline", f"{a}/ort-fp32", "--candidate", f"{b}/ort-fp32"]
    code, err = cli([*args, "--policy", str(policy)], capsys)
    assert code == 0, err


def test_experiment_gating_a_build_against_itself_is_refused_up_front(user_dir, tmp_path, capsys):
    exp = tmp_path / "exp.toml"
    text = (user_dir / "exp.toml").read_text()
    exp.write_text(text.replace('candidates = ["ort-int8-dynamic"]', 'candidates = ["ort-fp32"]'))
    for name in ("val.csv", "calib.csv", "policy.toml"):
        shutil.copy(user_dir / name, tmp_path / name)
    code, err = cli(["run", str(exp), "--reports", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 2 and "against itself" in error_line(err)
    assert not (tmp_path / "r").exists()
