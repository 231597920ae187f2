"""``evaluate_gate``: a pure decision over two builds' result records and a policy.

It fails closed: a missing metric, a different test set, NaN in a record, or a
comparison it cannot make is a failing check with a reason, never a pass; evidence
that cannot tell (too few rows, an interval straddling a limit) is INCONCLUSIVE with
what would settle it. ``judge`` is the one pure function (records in memory);
``evaluate_gate`` loads records from disk and calls it. A build gated against itself
is refused (ConfigError) unless ``allow_same``.
The decision record and its reader live in ``workbench.results.gate``. Every check reads like
"ort-int8-static accuracy −1.40 pts vs ort-fp32, 95% CI [−2.10, −0.70], limit 1.00 → FAIL".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError, ResultsError
from workbench.gate import accuracy, rules, traffic
from workbench.gate.rules import Side
from workbench.results.gate import (
    ERROR,
    FAIL,
    GATE_SCHEMA_VERSION,
    INCONCLUSIVE,
    PASS,
    GateCheck,
    GateDecision,
)
from workbench.results.noise import noise
from workbench.results.policy import GatePolicy
from workbench.results.predictions import load_predictions
from workbench.results.records import load_run

__all__ = [
    "Parties",
    "decide",
    "evaluate_gate",
    "judge",
    "judge_labelled",
    "overall",
]


def overall(checks: list[GateCheck]) -> str:
    """FAIL if any check fails or errs, else INCONCLUSIVE if any cannot tell, else PASS."""
    statuses = {c.status for c in checks}
    if statuses & {FAIL, ERROR}:
        return "FAIL"
    if INCONCLUSIVE in statuses:
        return "INCONCLUSIVE"
    return "PASS"


@dataclass(frozen=True)
class Parties:
    """Who is compared, where their records live and which test set the verdict belongs to."""

    baseline: str
    candidate: str
    baseline_run_dir: str = ""
    candidate_run_dir: str = ""
    test_set_sha256: str = ""


def decide(
    checks: list[GateCheck],
    policy: GatePolicy,
    parties: Parties,
    *,
    allow_cross_device: bool = False,
    warnings: list[str] | None = None,
) -> GateDecision:
    """The decision record for a list of checks (the only place a verdict is formed)."""
    verdict = overall(checks)
    return GateDecision(
        schema_version=GATE_SCHEMA_VERSION,
        passed=verdict == "PASS",
        verdict=verdict,
        baseline=parties.baseline,
        candidate=parties.candidate,
        baseline_run_dir=parties.baseline_run_dir,
        candidate_run_dir=parties.candidate_run_dir,
        test_set_sha256=parties.test_set_sha256,
        allow_cross_device=allow_cross_device,
        policy=policy,
        checks=checks,
        reasons=[c.message for c in checks if c.status != PASS],
        warnings=list(warnings or []),
    )


def judge(
    base: Side,
    cand: Side,
    policy: GatePolicy,
    *,
    speed_base: Side | None = None,
    allow_cross_device: bool = False,
) -> GateDecision:
    """The judge: a pure function of two builds' records (predictions in memory) and a policy.

    ``speed_base`` is the build the speed-up is measured against (default ``base``). Example::

        d = judge(base_side, cand_side, policy)
        d.verdict, d.reasons
    """
    speed_base = speed_base or base
    checks = [rules.check_test_set(base, cand), rules.check_finite([base, cand, speed_base])]
    labelled = accuracy.labelled_from_sides(base, cand)
    prereq = ""
    if checks[0].status != PASS:
        prereq = f"not evaluated ({rules.without_verdict(checks[0].message)})"
    checks += accuracy.accuracy_checks(labelled, policy, prereq)
    if policy.min_speedup is not None:
        checks.append(rules.check_speedup(speed_base, cand, policy, allow_cross_device))
    if policy.max_p99_ms is not None:
        checks.append(rules.check_p99(cand, policy))
    if policy.max_peak_memory_mb is not None:
        checks.append(rules.check_memory(cand, policy))
    checks = traffic.with_traffic(checks, base, cand, policy)
    parties = Parties(
        base.label, cand.label, str(base.run_dir), str(cand.run_dir), cand.run.test_set_sha256
    )
    warnings = sanity_warnings(base, cand)
    warnings += latency_warnings(speed_base, cand, policy) if policy.min_speedup else []
    return decide(checks, policy, parties, allow_cross_device=allow_cross_device, warnings=warnings)


def sanity_warnings(base: Side, cand: Side) -> list[str]:
    """The runs' own sanity warnings (a degenerate model or tokenization): the verdict is about
    such a model, which passes any drop limit, so the gate says so next to its verdict."""
    runs = [base.run] if base.run_dir == cand.run_dir else [base.run, cand.run]
    return [f"sanity: {w}" for run in runs for w in run.sanity_warnings]


def judge_labelled(
    labelled: accuracy.Labelled, policy: GatePolicy, parties: Parties | None = None
) -> GateDecision:
    """The judge on predictions alone (the search's candidates): the labelled-prediction rules
    of ``policy``; the latency and memory rules need records and are judged by ``judge``."""
    parties = parties or Parties(labelled.baseline, labelled.candidate)
    return decide(accuracy.accuracy_checks(labelled, policy), policy, parties)


def latency_warnings(base: Side, cand: Side, policy: GatePolicy) -> list[str]:
    """Noise notes on the two latency records the speed rule reads (they do not change it)."""
    out = []
    for side in (base, cand):
        lat = rules._latency_at(side, policy)
        if not isinstance(lat, str):
            out += [f"{side.build.name} latency: {w}" for w in noise(lat).warnings]
    return out


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
    """Load two builds' records (and predictions) from run directories and ``judge`` them.

    Runs are result directories (``reports/<run-id>/``); they may be different runs.
    A missing run directory or build name raises ResultsError (bad input, exit 2), the same
    build on both sides ConfigError unless ``allow_same``; everything else is a check. Example::

        d = evaluate_gate("reports/r1", "ort-fp32", "reports/r1", "ort-int8-dynamic", policy)
        print(d.verdict, *d.reasons, sep="\\n")
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
    return judge(base, cand, policy, speed_base=speed_base, allow_cross_device=allow_cross_device)


# ---- helpers -------------------------------------------------------------------------------


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
    folder = p if p.suffix != ".json" else p.parent
    record = run.build(build)
    if record.accuracy is None:
        return Side(run, record, folder)
    try:
        return Side(run, record, folder, load_predictions(folder, record))
    except ResultsError as exc:
        return Side(run, record, folder, None, str(exc))
