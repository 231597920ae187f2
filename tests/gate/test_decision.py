"""Each gate rule passing and failing on constructed paired predictions, and fail-closed cases."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from workbench.errors import ResultsError
from workbench.gate import evaluate_gate, load_decision, parse_policy, write_gate_outputs
from workbench.results.gate import GateDecision


def gate(run: Path, cand_run: Path | None = None, **policy) -> GateDecision:
    return evaluate_gate(run, "base", cand_run or run, "cand", parse_policy(policy))


def check(decision: GateDecision, name: str):
    return next(c for c in decision.checks if c.name == name)


# ---- accuracy (paired bootstrap upper bound of the drop) -----------------------------------


def test_accuracy_rule_passes_on_equal_builds(make_paired):
    d = gate(make_paired(n=1000, n_b=5, n_c=5), max_accuracy_drop=0.01)
    c = check(d, "accuracy_drop")
    assert d.passed and c.passed
    assert c.details["diff"] == 0.0
    assert c.details["ci_low"] > -0.01
    assert "95% CI [" in c.message and c.message.endswith("→ PASS")


def test_accuracy_rule_fails_on_a_real_drop(make_paired):
    d = gate(make_paired(n=1000, n_b=30, n_c=5), max_accuracy_drop=0.01)
    c = check(d, "accuracy_drop")
    assert not d.passed and c.status == "fail"
    assert c.details["diff"] == pytest.approx(-0.025)
    assert c.observed == pytest.approx(-c.details["ci_low"])  # observed = upper bound of the drop
    assert "accuracy −2.50 pts" in c.message and c.message.endswith("→ FAIL")
    assert c.message in d.reasons


def test_small_test_set_cannot_pass_by_luck(make_paired):
    # point estimate 0.0 (no drop) but n=120: the CI straddles the 1-point limit, so the data
    # cannot tell: INCONCLUSIVE (not PASS, and not FAIL either), saying how many rows would
    d = gate(make_paired(n=120, n_b=3, n_c=3), max_accuracy_drop=0.01)
    c = check(d, "accuracy_drop")
    assert c.details["diff"] == 0.0 and c.status == "inconclusive"
    assert c.details["ci_low"] < -0.01 < c.details["ci_high"]
    assert "labelled rows at the observed disagreement" in c.details["settle"]
    assert c.details["settle"] in c.message and c.message.endswith("→ INCONCLUSIVE")
    assert d.verdict == "INCONCLUSIVE" and not d.passed


def test_macro_f1_metric(make_paired):
    run = make_paired(n=1000, n_b=5, n_c=5)
    assert check(gate(run, metric="macro_f1", max_accuracy_drop=0.02), "macro_f1_drop").passed
    bad = make_paired(n=1000, n_b=40, n_c=2, name="bad")
    c = check(gate(bad, metric="macro_f1", max_accuracy_drop=0.02), "macro_f1_drop")
    assert c.status == "fail" and "macro_f1 −" in c.message


def test_significance_rule(make_paired):
    ok = gate(
        make_paired(n=1000, n_b=6, n_c=4), max_accuracy_drop=0.05, fail_on_significant_drop=True
    )
    assert check(ok, "mcnemar").passed
    bad = gate(
        make_paired(n=1000, n_b=30, n_c=5, name="b"),
        max_accuracy_drop=0.05,
        fail_on_significant_drop=True,
    )
    c = check(bad, "mcnemar")
    assert c.status == "fail" and c.observed is not None and c.observed < 0.05
    assert check(bad, "accuracy_drop").passed  # within 5 points, yet significantly worse


# ---- agreement, speed-up, p99, memory ------------------------------------------------------


def test_agreement_rule(make_paired):
    run = make_paired(n=1000, n_b=5, n_c=5)  # 10 flips: 99.0%, Wilson 95% CI [98.17, 99.46]
    assert check(gate(run, min_prediction_agreement=0.98), "agreement").passed
    c = check(gate(run, min_prediction_agreement=0.995), "agreement")
    assert c.status == "fail" and c.observed == pytest.approx(0.99)
    assert c.details["flipped"] == 10
    c = check(gate(run, min_prediction_agreement=0.99), "agreement")  # at the edge
    assert c.status == "inconclusive" and "cannot be settled by more rows" in c.message


def test_speedup_rule(make_paired):
    run = make_paired(base_p50=6.0, cand_p50=3.0)
    c = check(gate(run, min_speedup=1.5), "speedup")
    assert c.passed and c.observed == pytest.approx(2.0, rel=1e-6)
    assert "×2.00" in c.message
    c = check(gate(run, min_speedup=2.5), "speedup")
    assert c.status == "fail"


def test_speedup_against_a_named_baseline_build(demo_run):
    pol = parse_policy({"min_speedup": 1.4, "speedup_baseline": "pytorch-fp32"})
    d = evaluate_gate(demo_run, "ort-fp32", demo_run, "ort-int8-static", pol)
    c = check(d, "speedup")
    assert c.passed and "vs pytorch-fp32" in c.message  # 9.4 / 6.3 ms
    d = evaluate_gate(
        demo_run, "ort-fp32", demo_run, "ort-int8-static", parse_policy({"min_speedup": 1.4})
    )
    assert check(d, "speedup").status == "fail"  # static INT8 is no faster than ORT FP32


def test_speedup_refused_across_hardware_unless_allowed(make_paired):
    base = make_paired(name="a", cpu="Intel Xeon", cand_p50=3.0)
    cand = make_paired(name="b", cpu="AMD EPYC 7B13", cpu_count=16, cand_p50=3.0)
    pol = parse_policy({"min_speedup": 1.5})
    d = evaluate_gate(base, "base", cand, "cand", pol)
    c = check(d, "speedup")
    assert c.status == "error" and "refusing to compare latency across hardware" in c.message
    assert "--allow-cross-device" in c.message and not d.passed
    d = evaluate_gate(base, "base", cand, "cand", pol, allow_cross_device=True)
    c = check(d, "speedup")
    assert c.passed and c.details["cross_device"] and not c.details["side_by_side"]
    assert "not measured side by side" in c.message


def test_p99_rule(make_paired):
    run = make_paired(cand_p50=3.0)
    assert check(gate(run, max_p99_ms=10.0), "p99").passed
    assert check(gate(run, max_p99_ms=3.0), "p99").status == "fail"
    c = check(gate(run, max_p99_ms=10.0, latency_batch=8), "p99")
    assert c.status == "error" and "no latency at batch 8" in c.message


def test_memory_rule(make_paired):
    run = make_paired(cand_rss=700.0)
    assert check(gate(run, max_peak_memory_mb=1024), "peak_memory").passed
    assert check(gate(run, max_peak_memory_mb=512), "peak_memory").status == "fail"


# ---- fail closed ---------------------------------------------------------------------------


def test_test_set_hash_mismatch_fails(make_paired):
    a = make_paired(name="a", test_set_sha256="a" * 64)
    b = make_paired(name="b", test_set_sha256="b" * 64)
    d = evaluate_gate(a, "base", b, "cand", parse_policy({"max_accuracy_drop": 0.5}))
    assert not d.passed
    assert check(d, "test_set").status == "fail"
    c = check(d, "accuracy_drop")
    assert c.status == "error" and "test sets differ" in c.message


def test_too_few_samples_is_inconclusive(make_paired):
    d = gate(make_paired(n=150), max_accuracy_drop=0.5, min_samples=200)
    c = check(d, "samples")
    assert c.status == "inconclusive" and "label at least 50 more test rows" in c.message
    assert check(d, "accuracy_drop").passed  # still evaluated: a clear FAIL would still show
    assert d.verdict == "INCONCLUSIVE" and not d.passed and d.exit_code == 4


def _edit_run(run: Path, edit) -> None:
    data = json.loads((run / "run.json").read_text())
    edit(data)
    (run / "run.json").write_text(json.dumps(data))


def test_nan_in_a_record_fails(make_paired):
    run = make_paired()

    def nan_p99(data):  # NaN is stored as null; the reader turns it back into NaN
        data["builds"][1]["latency"][0]["p99_ms"] = None

    _edit_run(run, nan_p99)
    d = gate(run, max_accuracy_drop=0.5)
    c = check(d, "finite")
    assert c.status == "fail" and "latency[0].p99_ms" in c.message and not d.passed


def test_nan_logits_fail(make_paired):
    import pandas as pd

    run = make_paired()
    p = run / "predictions" / "cand.parquet"
    df = pd.read_parquet(p)
    df.at[3, "logits"] = [float("nan"), 1.0]
    df.to_parquet(p)
    c = check(gate(run, max_accuracy_drop=0.5), "samples")
    assert c.status == "error" and "NaN/inf logits" in c.message


def test_missing_metric_fails(make_paired):
    run = make_paired()
    _edit_run(run, lambda data: data["builds"][1].update(accuracy=None))
    d = gate(run, max_accuracy_drop=0.5, min_prediction_agreement=0.5)
    assert check(d, "samples").status == "error" and "no accuracy result" in d.reasons[0]
    assert check(d, "accuracy_drop").status == "error"
    assert check(d, "agreement").status == "error"
    assert not d.passed


def test_missing_predictions_file_fails(make_paired):
    run = make_paired()
    (run / "predictions" / "cand.parquet").unlink()
    d = gate(run, max_accuracy_drop=0.5)
    assert not d.passed and "predictions of cand are missing" in check(d, "samples").message


def test_record_that_disagrees_with_its_predictions_fails(make_paired):
    run = make_paired()
    _edit_run(run, lambda data: data["builds"][1]["accuracy"].update(accuracy=0.99))
    c = check(gate(run, max_accuracy_drop=0.5), "samples")
    assert c.status == "error" and "record says accuracy 0.9900" in c.message


def test_predictions_on_different_samples_fail(make_paired, tmp_path):
    import pandas as pd

    run = make_paired()
    p = run / "predictions" / "cand.parquet"
    df = pd.read_parquet(p)
    df.loc[0, "idx"] = 10**6
    df.to_parquet(p)
    c = check(gate(run, max_accuracy_drop=0.5), "samples")
    assert c.status == "error" and "predicted different samples" in c.message


def test_unknown_build_or_run_is_bad_input(make_paired, tmp_path):
    run = make_paired()
    with pytest.raises(ResultsError, match="has no build 'nope'; it has: base, cand"):
        evaluate_gate(run, "base", run, "nope", parse_policy({"max_p99_ms": 1.0}))
    with pytest.raises(ResultsError, match="does not exist"):
        evaluate_gate(tmp_path / "missing", "base", run, "cand", parse_policy({"max_p99_ms": 1.0}))


# ---- outputs -------------------------------------------------------------------------------


def test_outputs_round_trip_and_escape(demo_run, tmp_path):
    run = tmp_path / "demo"
    shutil.copytree(demo_run, run)
    pol = parse_policy({"max_accuracy_drop": 0.01, "min_speedup": 1.5, "max_p99_ms": 100})
    d = evaluate_gate(run, "ort-fp32", run, "ort-int8-static", pol)
    paths = write_gate_outputs(d, tmp_path / "out")
    assert load_decision(paths["json"]) == d
    md = paths["markdown"].read_text()
    assert md.startswith("## Gate: ❌ FAIL") and "| speedup | ❌ fail |" in md
    root = ET.parse(paths["junit"]).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(d.checks))
    bad = sum(int(suite.get(k, "0")) for k in ("failures", "errors", "skipped"))
    assert bad == len(d.reasons)
    assert {c.get("name") for c in suite.iter("testcase")} == {c.name for c in d.checks}


def test_load_decision_rejects_foreign_json(tmp_path):
    p = tmp_path / "gate.json"
    p.write_text('{"schema_version": 99}')
    with pytest.raises(ResultsError, match="not a gate decision"):
        load_decision(p)


def test_speedup_refused_between_devices_of_one_run(tmp_path):
    import numpy as np

    from tests.run_fixtures import SyntheticBuild, write_run

    labels = np.random.default_rng(0).integers(0, 2, 200)
    logits = np.eye(2)[labels] * 2.0
    builds = [
        SyntheticBuild("ort-fp32", "onnxruntime", "fp32", logits, {(1, 128): 6.0}),
        SyntheticBuild(
            "trt-int8", "tensorrt", "int8", logits, {(1, 128): 0.8}, device="NVIDIA H100"
        ),
    ]
    write_run(tmp_path / "r", labels, builds, gpu="NVIDIA H100 80GB HBM3")
    pol = parse_policy({"min_speedup": 2.0})
    c = check(evaluate_gate(tmp_path / "r", "ort-fp32", tmp_path / "r", "trt-int8", pol), "speedup")
    assert c.status == "error" and "device cpu" in c.message and "NVIDIA H100" in c.message
    d = evaluate_gate(
        tmp_path / "r", "ort-fp32", tmp_path / "r", "trt-int8", pol, allow_cross_device=True
    )
    assert check(d, "speedup").passed and d.passed


def test_recall_rule_catches_a_class_shift_at_equal_accuracy(tmp_path):
    """Spam-style: the candidate trades 20 misses of class 1 for 20 false positives of class 1;
    accuracy and agreement-by-count look calm, the per-class recall check does not."""
    import numpy as np

    from tests.gate.conftest import paired_run

    labels = np.array([0] * 500 + [1] * 500)
    base, cand = labels.copy(), labels.copy()
    base[500:520] = 0  # the baseline misses 20 of class 1
    cand[:20] = 1  # the candidate gets those right but calls 20 of class 0 class 1
    assert np.mean(base == labels) == np.mean(cand == labels) == 0.98
    paired_run(tmp_path / "r", labels, base, cand)
    d = gate(tmp_path / "r", max_accuracy_drop=0.02, max_recall_drop=0.02)
    assert check(d, "accuracy_drop").passed
    c = check(d, "recall")
    assert c.status == "fail" and "class" in c.message
    assert c.details["per_class"]["0"]["drop"] == pytest.approx(0.04)  # 500 -> 480 correct
    # 20 of 500 lost: the 95% CI of the change reaches about −5.8 pts
    assert check(gate(tmp_path / "r", max_recall_drop=0.05), "recall").status == "inconclusive"
    assert check(gate(tmp_path / "r", max_recall_drop=0.08), "recall").passed
