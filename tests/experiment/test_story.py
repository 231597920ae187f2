"""The demo's story on a user's experiment (tiny HF classifier, real texts): the run's verdict,
then -- when the gated build does not PASS -- the search, and one recommendation whose exit
code is the judge's verdict on the recommended build."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from workbench.experiment.story import (
    EXIT,
    StoryOptions,
    _only_a_busy_machine,
    gate_decision,
    recommend,
)

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def user_run(user_experiment: Path, tmp_path_factory: pytest.TempPathFactory):
    from workbench.experiment.engine import RunOptions, run_experiment
    from workbench.experiment.spec import load_experiment

    root = tmp_path_factory.mktemp("story")
    exp = replace(load_experiment(user_experiment), quick=True)
    opts = RunOptions(str(root / "reports"), str(root / "sets"), "r", progress=False)
    run, run_dir = run_experiment(exp, opts)
    return run, run_dir, root


def test_a_build_that_does_not_pass_leads_to_the_search(user_run):
    run, run_dir, root = user_run
    d = gate_decision(run, run_dir)
    assert d is not None and d.verdict != "PASS"  # 120 rows < the policy's 200: cannot PASS
    rec = recommend(run, run_dir, StoryOptions(calibration_root=str(root / "sets"), progress=False))
    assert rec is not None and rec.source == "search"
    assert (run_dir / "search" / "search.json").is_file() and rec.search_dir
    lines = rec.lines()
    assert lines[-1].startswith(f"demo {rec.verdict}: ") and rec.exit_code == EXIT[rec.verdict]
    assert rec.verdict != "PASS" and rec.helps  # a 60-row gate half cannot tell
    assert any("more labelled rows" in h and "400" in h for h in rec.helps)
    assert any("unlabelled traffic" in h for h in rec.helps)
    assert any("--max-float" in h for h in rec.helps)
    if rec.source == "search" and rec.build:  # the search's choice, judged on its gate half
        assert rec.build.startswith(("ort-int8-static", "ort-int8-dynamic")) and any(
            "gate half" in r for r in rec.reasons
        )
        assert any(x.endswith("exclude.toml") for x in lines) and "95% CI" in lines[-1]
        s = rec.speedup
        assert s is not None and 0 < s.low <= s.speedup <= s.high
        assert rec.shape == (d.policy.latency_batch, d.policy.latency_seq)
        chosen = ("best.ort.onnx", "best.onnx")  # static plain Q/DQ, or any other kind
        assert any((run_dir / "search" / f).is_file() for f in chosen)
    elif d.verdict == "INCONCLUSIVE":  # nothing searched but FAILs; the gated build stays,
        # INCONCLUSIVE as the run judged it: too few rows is not a failure
        assert rec.source == "run" and rec.build == d.candidate.split("/")[-1]
        assert rec.verdict == "INCONCLUSIVE" and rec.exit_code == 4
        assert any("the search" in r and "found nothing better" in r for r in rec.reasons)
        assert not any(x.endswith("exclude.toml") for x in lines)
    else:  # the gated build failed and nothing searched passes
        assert lines[-1].startswith("demo FAIL: no INT8 build passes") and rec.exit_code == 1


def _passing_copy(user_run, tmp_path: Path):
    """A copy of the run (no search) and the judge's PASS on it under a lenient policy."""
    from workbench.gate import evaluate_gate, parse_policy

    run, run_dir, _ = user_run
    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("search"))
    (batch, seq) = next((x.batch_size, x.seq_len) for x in run.build("ort-fp32").latency)
    lenient = {"max_accuracy_drop": 0.5, "min_samples": 10, "latency_batch": batch,
               "latency_seq": seq, "min_speedup": 0.01}  # fmt: skip
    d = evaluate_gate(copy, "ort-fp32", copy, "ort-int8-static", parse_policy(lenient))
    assert d.verdict == "PASS", d.reasons
    return copy, d


def test_a_passing_build_is_recommended_as_is(user_run, tmp_path):
    from workbench.gate.outputs import write_gate_outputs

    run, _, _ = user_run
    copy, d = _passing_copy(user_run, tmp_path)
    write_gate_outputs(d, copy)
    rec = recommend(run, copy, StoryOptions(progress=False))
    assert rec is not None and (rec.source, rec.build, rec.verdict) == (
        "run",
        "ort-int8-static",
        "PASS",
    )
    assert rec.exit_code == 0 and not rec.helps and not (copy / "search").exists()
    s = rec.speedup
    assert s is not None and s.low <= s.speedup <= s.high
    assert rec.lines()[-1].startswith("demo PASS: ort-int8-static, ×")


def test_a_speed_rule_left_open_by_a_busy_machine_is_not_searched(user_run, tmp_path):
    """Every accuracy rule passed and only the speed-up could not be told because the machine
    was busy: a re-run on a quiet machine settles it, a search (timed on the same busy
    machine) would not, so none runs and the gated build stays, INCONCLUSIVE."""
    from workbench.gate.outputs import write_gate_outputs

    run, _, _ = user_run
    copy, d = _passing_copy(user_run, tmp_path)
    settle = (
        "the machine was busy (load 3.4 on 2 cores, 40 of 40 blocks starved): re-run on a quiet one"
    )
    open_ = {"contended": True, "settle": settle}
    busy = [
        replace(c, status="inconclusive", details={**c.details, **open_})
        if c.name == "speedup"
        else c
        for c in d.checks
    ]
    assert busy != d.checks  # the policy has a speed rule to leave open
    reasons = [c.message for c in busy if not c.passed]
    write_gate_outputs(
        replace(d, verdict="INCONCLUSIVE", passed=False, checks=busy, reasons=reasons), copy
    )
    rec = recommend(run, copy, StoryOptions(progress=False))
    assert rec is not None and (rec.source, rec.build, rec.verdict) == (
        "run",
        "ort-int8-static",
        "INCONCLUSIVE",
    )
    assert rec.exit_code == 4 and not rec.search_dir and not (copy / "search").exists()
    assert rec.helps and rec.helps[0].startswith(settle) and "no search ran" in rec.helps[0]
    assert rec.lines()[-1].startswith("demo INCONCLUSIVE: ort-int8-static")

    # the same decision with an accuracy rule open too: the search runs as before
    acc = next(i for i, c in enumerate(busy) if c.name != "speedup")
    both = list(busy)
    both[acc] = replace(both[acc], status="inconclusive")
    d2 = replace(d, verdict="INCONCLUSIVE", passed=False, checks=both, reasons=reasons)
    assert _only_a_busy_machine(d2) == ""
    assert _only_a_busy_machine(replace(d, verdict="INCONCLUSIVE", checks=busy)) == settle


def test_no_gate_means_no_recommendation(user_run, tmp_path):
    run, run_dir, _ = user_run
    off = replace(
        run, experiment=replace(run.experiment, gate=replace(run.experiment.gate, enabled=False))
    )
    assert recommend(off, run_dir, StoryOptions(progress=False)) is None
