"""The speed rule on paired, interleaved timings: the three verdicts from planted records."""

from __future__ import annotations

from dataclasses import replace

import pytest

from workbench.gate import evaluate_gate
from workbench.gate.policy import parse_policy
from workbench.results.gate import INCONCLUSIVE
from workbench.results.records import PairedSpeedup, load_run, save_run


def _paired(ratio: float, lo: float, hi: float, contended: bool = False, **kw) -> PairedSpeedup:
    fields = dict(
        baseline="base", candidate="cand", batch=1, seq=128, ratio=ratio, ci_low=lo, ci_high=hi,
        confidence=0.95, blocks_used=40, blocks_dropped=0, load_avg=0.1, steal_pct=0.0,
        cpu_per_wall=1.9, cores=2, contended=contended,
        reason="load 3.2 on 2 cores, 7 of 40 blocks starved" if contended else "", blocks=[],
    )  # fmt: skip
    return PairedSpeedup(**{**fields, **kw})


def _speed(make_paired, sp: PairedSpeedup, **policy):
    run_dir = make_paired(base_p50=6.0, cand_p50=3.0)  # p50s say x2.00: the paired record rules
    save_run(replace(load_run(run_dir), speedups=[sp]), run_dir)
    pol = parse_policy({"min_speedup": 1.5, **policy})
    d = evaluate_gate(run_dir, "base", run_dir, "cand", pol)
    return next(c for c in d.checks if c.name == "speedup")


def test_whole_ci_above_the_limit_passes(make_paired):
    c = _speed(make_paired, _paired(1.8, 1.6, 2.0, contended=True))
    assert c.status == "pass" and c.observed == pytest.approx(1.8)
    assert "CI [×1.60, ×2.00]" in c.message and c.message.endswith("→ PASS")
    assert "settle" not in c.details and c.details["paired"]


def test_whole_ci_below_the_limit_on_a_quiet_machine_fails(make_paired):
    c = _speed(make_paired, _paired(1.0, 0.95, 1.05))
    assert c.status == "fail" and c.message.endswith("→ FAIL") and not c.passed


def test_below_the_limit_on_a_busy_machine_is_inconclusive(make_paired):
    c = _speed(make_paired, _paired(1.0, 0.95, 1.05, contended=True))
    assert c.status == INCONCLUSIVE == "inconclusive" and not c.passed
    assert c.details["settle"] == (
        "the machine was busy (load 3.2 on 2 cores, 7 of 40 blocks starved): re-run on a quiet one"
    )
    assert c.message.endswith("re-run on a quiet one → INCONCLUSIVE")


def test_ci_straddling_the_limit_is_inconclusive(make_paired):
    c = _speed(make_paired, _paired(1.5, 1.3, 1.7))
    assert c.status == INCONCLUSIVE
    assert (
        c.details["settle"]
        == "the CI [×1.30, ×1.70] straddles the limit ×1.50: re-run with more blocks"
    )


def test_every_block_starved_quotes_no_number(make_paired):
    from workbench.evaluate.paired import UNBOUNDED

    starved = _paired(
        0.0, 0.0, UNBOUNDED, contended=True, blocks_used=0, blocks_dropped=40,
        reason="load 3.4 on 2 cores, 40 of 40 blocks starved",
    )  # fmt: skip
    c = _speed(make_paired, starved)
    assert c.status == INCONCLUSIVE and "×0.00" not in c.message and "1000000" not in c.message
    assert c.message.startswith("cand speed-up vs base: too few blocks for a CI (paired")
    assert "0 blocks used, 40 starved dropped" in c.message
    assert c.message.endswith("re-run on a quiet one → INCONCLUSIVE")


def test_two_blocks_on_a_quiet_machine_ask_for_more(make_paired):
    from workbench.evaluate.paired import UNBOUNDED

    c = _speed(make_paired, _paired(1.2, 0.0, UNBOUNDED, blocks_used=2))
    assert c.status == INCONCLUSIVE and "1000000" not in c.message
    assert c.details["settle"] == "too few blocks for a CI: re-run with more blocks"


def test_paired_record_of_another_shape_is_not_used(make_paired):
    c = _speed(make_paired, _paired(1.0, 0.95, 1.05, batch=8))
    assert c.status == "pass" and "paired" not in c.details  # falls back to the p50 ratio
