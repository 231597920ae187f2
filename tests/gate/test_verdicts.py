"""Three verdicts on planted prediction pairs, the rows-needed formula checked by simulation,
and the same verdict and warnings in gate.json, gate.md and JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from workbench.gate import (
    Labelled,
    evaluate_gate,
    judge_labelled,
    load_decision,
    parse_policy,
    write_gate_outputs,
)
from workbench.results import stats
from workbench.results.gate import GateDecision
from workbench.results.predictions import Predictions

POLICY = {"max_accuracy_drop": 0.01, "min_prediction_agreement": 0.97, "min_samples": 200}


def _preds(name: str, labels: np.ndarray, pred: np.ndarray) -> Predictions:
    n, k = len(labels), int(max(labels.max(), pred.max())) + 1
    return Predictions(name, np.arange(n) * 2 + 5, labels, pred, np.eye(k)[pred])


def _judge(labels, base, cand, **policy) -> GateDecision:
    lab = Labelled("fp32", "int8", _preds("fp32", labels, base), _preds("int8", labels, cand))
    return judge_labelled(lab, parse_policy({**POLICY, **policy}))


def _check(d: GateDecision, name: str):
    return next(c for c in d.checks if c.name == name)


def _five_class(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    base = labels.copy()
    wrong = rng.choice(n, n // 10, replace=False)  # the baseline is 90% right
    base[wrong] = (labels[wrong] + 1) % 5
    return labels, base


def test_identical_candidate_on_200_rows_passes():
    labels, base = _five_class(200)
    d = _judge(labels, base, base.copy())
    assert d.verdict == "PASS" and d.passed and d.exit_code == 0 and not d.reasons
    assert {c.status for c in d.checks} == {"pass"}


def test_clearly_worse_candidate_fails():
    labels, base = _five_class(200)
    cand = base.copy()
    right = np.flatnonzero(base == labels)[:30]  # 15 points worse
    cand[right] = (labels[right] + 2) % 5
    d = _judge(labels, base, cand)
    assert d.verdict == "FAIL" and d.exit_code == 1
    c = _check(d, "accuracy_drop")
    assert c.status == "fail" and c.details["ci_high"] < -0.01 and "settle" not in c.details


def _six_flips() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The issue's case: 239 rows, 6 predictions change (97.5% agreement), 3 of them from
    right to wrong and 3 from one wrong class to another: accuracy −1.26 pts."""
    labels, base = _five_class(239, seed=1)
    cand = base.copy()
    right, wrong = np.flatnonzero(base == labels)[:3], np.flatnonzero(base != labels)[:3]
    cand[right] = (labels[right] + 3) % 5
    cand[wrong] = (base[wrong] + 1) % 5
    cand[wrong] = np.where(cand[wrong] == labels[wrong], (cand[wrong] + 1) % 5, cand[wrong])
    return labels, base, cand


def test_six_flips_in_239_rows_is_inconclusive_with_rows_needed():
    labels, base, cand = _six_flips()
    assert int(np.sum(base != cand)) == 6
    d = _judge(labels, base, cand)
    assert d.verdict == "INCONCLUSIVE" and d.exit_code == 4 and not d.passed
    c = _check(d, "accuracy_drop")
    assert c.status == "inconclusive"
    assert c.details["diff"] == pytest.approx(-3 / 239)  # −1.26 pts
    assert c.details["ci_low"] < -0.01 < c.details["ci_high"]
    needed = stats.paired_samples_needed(3, 0, 239, 0.01)
    assert needed is not None and f"about {needed} labelled rows" in c.details["settle"]
    assert c.details["settle"] in c.message and c.message in d.reasons
    a = _check(d, "agreement")
    assert a.status == "inconclusive" and "labelled rows" in a.details["settle"]


@pytest.mark.parametrize("power", [0.5, 0.8])
def test_rows_needed_formula_matches_a_simulation(power):
    """At the reported n, paired data drawn at the observed rates (3 of 239 rows lost, none
    gained) give an interval that clears the 1-point limit in about ``power`` of repeats."""
    b, c, n0, limit = 3, 0, 239, 0.01
    n = stats.paired_samples_needed(b, c, n0, limit, 0.95, power)
    assert n is not None and n > n0
    rng = np.random.default_rng(7)
    reps = 4000
    counts = rng.multinomial(n, [b / n0, c / n0, 1 - (b + c) / n0], size=reps)
    mean = (counts[:, 1] - counts[:, 0]) / n
    var = (counts[:, 0] + counts[:, 1]) / n - mean**2
    half = 1.959964 * np.sqrt(var / n)
    cleared = np.mean((mean + half < -limit) | (mean - half > -limit))
    assert cleared == pytest.approx(power, abs=0.04)


def test_rows_needed_holds_for_the_gates_own_bootstrap_rule():
    """The same check through the judge itself (paired bootstrap), at a size where it is cheap:
    12 of 239 rows lost, limit 2 points -> n rows; repeats at n clear the limit ~80% of the time."""
    b, n0, limit = 12, 239, 0.02
    n = stats.paired_samples_needed(b, 0, n0, limit)
    assert n is not None and 300 < n < 600
    rng = np.random.default_rng(3)
    settled = 0
    reps = 100
    for _ in range(reps):
        labels = np.zeros(n, dtype=np.int64)
        cand = np.where(rng.random(n) < b / n0, 1, 0)
        d = _judge(labels, labels.copy(), cand, max_accuracy_drop=limit,
                   min_prediction_agreement=None)  # fmt: skip
        settled += _check(d, "accuracy_drop").status != "inconclusive"
    assert settled / reps == pytest.approx(0.8, abs=0.12)


def test_change_at_the_limit_cannot_be_settled_by_more_rows():
    assert stats.paired_samples_needed(2, 0, 200, 0.01) is None
    labels = np.zeros(200, dtype=np.int64)
    cand = labels.copy()
    cand[:2] = 1  # exactly −1.00 pts
    d = _judge(labels, labels.copy(), cand, min_prediction_agreement=None)
    c = _check(d, "accuracy_drop")
    assert c.status == "inconclusive" and "cannot be settled by more rows" in c.message


def test_too_small_a_split_is_inconclusive_not_fail():
    labels, base = _five_class(120)
    d = _judge(labels, base, base.copy())
    assert d.verdict == "INCONCLUSIVE"
    c = _check(d, "samples")
    assert c.status == "inconclusive" and "label at least 80 more" in c.details["settle"]


# ---- the same verdict and warnings in every output -----------------------------------------


def test_inconclusive_gate_outputs_and_warnings(make_paired, tmp_path):
    run = make_paired(n=239, n_b=3, n_c=0)
    data = json.loads((run / "run.json").read_text())
    lat = data["builds"][1]["latency"][0]
    half = len(lat["samples_ms"]) // 2
    lat["samples_ms"] = [x * (1.5 if i >= half else 1.0) for i, x in enumerate(lat["samples_ms"])]
    (run / "run.json").write_text(json.dumps(data))
    pol = parse_policy({"max_accuracy_drop": 0.01, "min_samples": 100, "min_speedup": 1.2})
    d = evaluate_gate(run, "base", run, "cand", pol)
    assert d.verdict == "INCONCLUSIVE" and d.exit_code == 4
    assert any("the machine's load changed while timing" in w for w in d.warnings)
    paths = write_gate_outputs(d, tmp_path / "out")
    assert load_decision(paths["json"]).verdict == "INCONCLUSIVE"
    md = paths["markdown"].read_text()
    assert md.startswith("## Gate: ❔ INCONCLUSIVE") and "| accuracy_drop | ❔ inconclusive |" in md
    assert "**Warnings**" in md and "load changed while timing" in md
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    # accuracy cannot tell on 239 rows; the unpaired speed-up cannot either on noisy timings
    assert suite is not None and suite.get("skipped") == "2" and suite.get("failures") == "0"
    speed = suite.find("testcase[@name='speedup']/skipped")
    assert speed is not None and "re-time both builds in one run" in speed.get("message", "")
    skipped = suite.find("testcase[@name='accuracy_drop']/skipped")
    assert skipped is not None and skipped.get("message", "").startswith("INCONCLUSIVE: ")
    assert "labelled rows" in skipped.get("message", "")
    props = {p.get("value") for p in suite.iter("property")}
    assert "INCONCLUSIVE" in props and any("load changed" in (v or "") for v in props)
    out = suite.find("system-out")
    assert out is not None and (out.text or "").startswith("gate INCONCLUSIVE")


def test_schema_2_gate_json_still_loads(make_paired, tmp_path):
    run = make_paired(n=300)
    d = evaluate_gate(run, "base", run, "cand", parse_policy({"max_accuracy_drop": 0.5}))
    p = write_gate_outputs(d, tmp_path)["json"]
    data = json.loads(p.read_text())
    for key in ("verdict", "warnings"):
        del data[key]
    data["schema_version"] = 2
    p.write_text(json.dumps(data))
    old = load_decision(p)
    assert old.verdict == ("PASS" if d.passed else "FAIL") and old.warnings == []


def test_sweep_cell_takes_the_judges_verdict(make_paired):
    from workbench.experiment.sweep import _gate_verdict
    from workbench.results.records import load_run

    run_dir = make_paired(n=239, n_b=3, n_c=0)
    assert _gate_verdict(run_dir, load_run(run_dir)) is None  # no gate ran
    pol = parse_policy({"max_accuracy_drop": 0.01, "min_samples": 100})
    write_gate_outputs(evaluate_gate(run_dir, "base", run_dir, "cand", pol), run_dir)
    assert _gate_verdict(run_dir, load_run(run_dir)) == "INCONCLUSIVE"
