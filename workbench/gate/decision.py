"""``evaluate_gate``: a pure decision over two builds' result records and a policy.

It fails closed: a missing metric, a different test set, too few samples, NaN in
a record, or a comparison it cannot make is a failing check with a reason, never
a pass. A build gated against itself is refused (ConfigError) unless ``allow_same``.
A decision records the candidate's test-set hash, so a gate.json left next to a
different run's record is reported as stale instead of shown as its verdict. Every check reads like
"ort-int8-static accuracy −1.40 pts vs ort-fp32, 95% CI [−2.10, −0.70], limit 1.00 → FAIL".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError, ResultsError
from workbench.gate import rules, traffic
from workbench.gate.policy import GatePolicy
from workbench.gate.rules import ERROR, FAIL, PASS, GateCheck, Side, hardware
from workbench.results.records import load_run
from workbench.results.serde import from_dict

GATE_SCHEMA_VERSION = 2  # 2: test_set_sha256
GATE_FILE = "gate.json"
__all__ = [
    "ERROR",
    "FAIL",
    "GATE_FILE",
    "GATE_SCHEMA_VERSION",
    "PASS",
    "GateCheck",
    "GateDecision",
    "evaluate_gate",
    "hardware",
    "load_decision",
]


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict: passed only if every check passed."""

    schema_version: int
    passed: bool
    baseline: str  # "<run_id>/<build>"
    candidate: str
    baseline_run_dir: str
    candidate_run_dir: str
    test_set_sha256: str  # the candidate's: a verdict belongs to this test set only
    allow_cross_device: bool
    policy: GatePolicy
    checks: list[GateCheck]
    reasons: list[str]


def evaluate_gate(
    baseline_run: str | Path,
    baseline_build: str,
    candidate_run: str | Path,
    candidate_build: str,
    policy: GatePolicy,
    *,
    allow_cross_device: bool = False,
    allow_same: bool = False,
) -> GateDecision:
    """Decide whether ``candidate_build`` may replace ``baseline_build`` under ``policy``.

    Runs are result directories (``reports/<run-id>/``); they may be different runs.
    A missing run directory or build name raises ResultsError (bad input, exit 2), the same
    build on both sides ConfigError unless ``allow_same``; everything else is a check. Example::

        d = evaluate_gate("reports/r1", "ort-fp32", "reports/r1", "ort-int8-dynamic", policy)
        print(d.passed, *d.reasons, sep="\\n")
    """
    base = _side(baseline_run, baseline_build)
    cand = _side(candidate_run, candidate_build)
    if not allow_same and _same_build(base, cand):
        raise ConfigError(
            f"baseline and candidate are the same build ({cand.label} in {cand.run_dir}): such a "
            "gate always passes; name two different builds, or pass --allow-same to mean it"
        )
    speed_base = base
    if policy.speedup_baseline is not None:
        speed_base = Side(base.run, base.run.build(policy.speedup_baseline), base.run_dir)

    checks = [rules.check_test_set(base, cand), rules.check_finite([base, cand, speed_base])]
    samples_check, paired = rules.check_samples(base, cand, policy)
    checks.append(samples_check)
    prereq = "" if paired else f"not evaluated ({rules.without_verdict(samples_check.message)})"
    if not prereq and not checks[0].passed:
        prereq = f"not evaluated ({rules.without_verdict(checks[0].message)})"
    if policy.max_accuracy_drop is not None:
        checks.append(rules.check_metric(base, cand, paired, policy, prereq))
    if policy.fail_on_significant_drop:
        checks.append(rules.check_significance(paired, policy, prereq))
    if policy.min_prediction_agreement is not None:
        checks.append(rules.check_agreement(base, cand, paired, policy, prereq))
    if policy.max_recall_drop is not None:
        checks.append(rules.check_recall(base, cand, paired, policy, prereq))
    if policy.min_speedup is not None:
        checks.append(rules.check_speedup(speed_base, cand, policy, allow_cross_device))
    if policy.max_p99_ms is not None:
        checks.append(rules.check_p99(cand, policy))
    if policy.max_peak_memory_mb is not None:
        checks.append(rules.check_memory(cand, policy))
    checks = traffic.with_traffic(checks, base, cand, policy)
    return GateDecision(
        schema_version=GATE_SCHEMA_VERSION,
        passed=all(c.passed for c in checks),
        baseline=base.label,
        candidate=cand.label,
        baseline_run_dir=str(base.run_dir),
        candidate_run_dir=str(cand.run_dir),
        test_set_sha256=cand.run.test_set_sha256,
        allow_cross_device=allow_cross_device,
        policy=policy,
        checks=checks,
        reasons=[c.message for c in checks if not c.passed],
    )


def load_decision(path: str | Path) -> GateDecision:
    """Read a gate.json; ResultsError if absent, corrupt, of another schema, or stale.

    Stale: the gate.json sits in a run directory whose run.json has another test set
    (a verdict about other results must never be shown as this run's).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{p} does not exist; run `workbench gate` first") from exc
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{p} is not valid JSON ({exc}); re-run `workbench gate`") from exc
    if not isinstance(data, dict) or data.get("schema_version") != GATE_SCHEMA_VERSION:
        raise ResultsError(
            f"{p} is not a gate decision of schema {GATE_SCHEMA_VERSION}; re-run `workbench gate`"
        )
    decision = from_dict(GateDecision, data)
    _check_not_stale(decision, p)
    return decision


# ---- helpers -------------------------------------------------------------------------------


def _check_not_stale(decision: GateDecision, path: Path) -> None:
    run_file = path.parent / "run.json"
    if not run_file.is_file():
        return  # written with --out elsewhere: nothing to compare with
    run = load_run(run_file)
    if run.test_set_sha256 != decision.test_set_sha256:
        raise ResultsError(
            f"{path} is stale: it gated test set {decision.test_set_sha256[:12]}, this run has "
            f"{run.test_set_sha256[:12]}; re-run `workbench gate` for this run"
        )


def _same_build(a: Side, b: Side) -> bool:
    if a.build.name != b.build.name:
        return False
    try:
        return a.run_dir.resolve() == b.run_dir.resolve()
    except OSError:
        return False


def _side(run_dir: str | Path, build: str) -> Side:
    p = Path(run_dir)
    run = load_run(p)
    return Side(run, run.build(build), p if p.suffix != ".json" else p.parent)
