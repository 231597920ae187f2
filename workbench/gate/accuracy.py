"""The gate's rules over labelled predictions held in memory: PASS, FAIL or INCONCLUSIVE.

Non-inferiority done properly: a rule passes when its whole confidence interval clears the
limit, fails when the whole interval is beyond it, and is inconclusive otherwise, saying how
many labelled rows would settle it at the observed rates (``stats.*samples_needed``). The same
functions judge a run's builds (``decision.judge``) and the search's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import ResultsError
from workbench.gate.policy import GatePolicy
from workbench.gate.rules import Side, _error, _pts, verdict_check
from workbench.results import stats
from workbench.results.fmt import fixed
from workbench.results.gate import FAIL, INCONCLUSIVE, PASS, GateCheck
from workbench.results.predictions import Predictions, pair


@dataclass(frozen=True)
class Labelled:
    """Two builds' predictions on the same labelled rows, with the names messages use."""

    baseline: str
    candidate: str
    base: Predictions
    cand: Predictions
    class_names: tuple[str, ...] = ()


def labelled_from_sides(base: Side, cand: Side) -> Labelled | str:
    """Pair two sides' predictions after checking them against their records, or say why not."""
    problems = []
    for s in (base, cand):
        if s.build.accuracy is None:
            return f"{s.label} has no accuracy result (metric missing)"
        if s.predictions is None:
            return s.predictions_error or f"{s.label} has no predictions"
    pb, pc = base.predictions, cand.predictions
    assert pb is not None and pc is not None  # checked above
    try:
        pair(pb, pc)
    except ResultsError as exc:
        return str(exc)
    for s, p in ((base, pb), (cand, pc)):
        acc = s.build.accuracy
        assert acc is not None  # checked above
        if acc.n != len(p):
            problems.append(f"{s.label} record says n={acc.n} but its predictions hold {len(p)}")
        elif len(p) and abs(acc.accuracy - stats.accuracy(p.label, p.pred)) > 1e-6:
            problems.append(
                f"{s.label} record says accuracy {acc.accuracy:.4f} but its predictions give "
                f"{stats.accuracy(p.label, p.pred):.4f}"
            )
        if p.logits.size and not np.all(np.isfinite(p.logits)):
            problems.append(f"{s.label} predictions contain NaN/inf logits")
    if problems:
        return "; ".join(problems) + "; re-run the evaluation"
    return Labelled(base.build.name, cand.build.name, pb, pc, tuple(cand.run.labels))


def accuracy_checks(
    labelled: Labelled | str, policy: GatePolicy, prereq: str = ""
) -> list[GateCheck]:
    """Every labelled-prediction rule the policy asks for; ``labelled`` as a string (or a
    ``prereq``) is why they could not be evaluated, and each becomes an error check."""
    if isinstance(labelled, str):
        samples = _error("samples", labelled)
        why, pairs = f"not evaluated ({labelled})", None
    else:
        samples, pairs = check_samples(labelled, policy), labelled
        why = prereq
    checks = [samples]
    if policy.max_accuracy_drop is not None:
        checks.append(check_metric(pairs, policy, why))
    if policy.fail_on_significant_drop:
        checks.append(check_significance(pairs, policy, why))
    if policy.min_prediction_agreement is not None:
        checks.append(check_agreement(pairs, policy, why))
    if policy.max_recall_drop is not None:
        checks.append(check_recall(pairs, policy, why))
    return checks


def check_samples(lab: Labelled, policy: GatePolicy) -> GateCheck:
    """Too few paired rows is INCONCLUSIVE (label more), never FAIL: the data cannot tell."""
    n, need = len(lab.cand), policy.min_samples
    msg = f"n={n} paired samples (minimum {need})"
    if n >= need:
        return verdict_check("samples", PASS, msg, n, need)
    if n == 0:
        return _error(
            "samples", "no labelled samples to compare; evaluate on a labelled test split"
        )
    settle = f"label at least {need - n} more test rows (the policy's minimum is {need})"
    return verdict_check("samples", INCONCLUSIVE, msg, n, need, settle, needed=need)


def _three_way(low: float, high: float, bound: float) -> str:
    """PASS when the whole interval is at or above ``bound``, FAIL when wholly below."""
    if low >= bound - 1e-12:
        return PASS
    if high < bound - 1e-12:
        return FAIL
    return INCONCLUSIVE


def _rows_settle(needed: int | None, n: int, what: str) -> str:
    if needed is None:
        return f"cannot be settled by more rows: the observed {what} is at the limit"
    return (
        f"about {max(needed, n + 1)} labelled rows at the observed disagreement would settle it "
        f"({stats.POWER:.0%} chance; this test set has {n})"
    )


def check_metric(lab: Labelled | None, policy: GatePolicy, prereq: str) -> GateCheck:
    """Non-inferiority of the metric change (candidate − baseline) against −max_accuracy_drop."""
    name = f"{policy.metric}_drop"
    if lab is None or prereq:
        return _error(name, prereq or "no paired predictions")
    pb, pc = lab.base, lab.cand
    ci = stats.paired_bootstrap(
        pc.label, pb.pred, pc.pred, policy.metric,
        policy.bootstrap_resamples, policy.confidence, policy.seed,
    )  # fmt: skip
    mc = stats.mcnemar_exact(pb.pred == pb.label, pc.pred == pc.label)
    limit = policy.max_accuracy_drop
    assert limit is not None
    n = len(pc)
    status = _three_way(ci.low, ci.high, -limit)
    settle = ""
    if status == INCONCLUSIVE:
        if policy.metric == "accuracy":
            needed = stats.paired_samples_needed(mc.b, mc.c, n, limit, policy.confidence)
        else:  # per-row variance from the bootstrap interval's width
            z = stats._z(policy.confidence, 0.5)
            var = ((ci.high - ci.low) / (2 * z)) ** 2 * n
            needed = stats.samples_needed(ci.diff, var, -limit, policy.confidence)
        settle = _rows_settle(needed, n, f"{policy.metric} change")
    conf = f"{policy.confidence * 100:g}%"
    msg = (
        f"{lab.candidate} {policy.metric} {_pts(ci.diff)} pts vs {lab.baseline}, "
        f"{conf} CI [{_pts(ci.low)}, {_pts(ci.high)}], limit {limit * 100:.2f} pts drop "
        f"(worst case {fixed(max(-ci.low, 0.0) * 100)}), n={n}, McNemar p={mc.p_value:.3g}"
    )
    return verdict_check(
        name, status, msg, -ci.low, limit, settle,
        diff=ci.diff, ci_low=ci.low, ci_high=ci.high, confidence=ci.confidence,
        resamples=ci.resamples, seed=ci.seed,
        baseline_value=stats.metric_value(policy.metric, pb.label, pb.pred),
        candidate_value=stats.metric_value(policy.metric, pc.label, pc.pred),
        mcnemar_b=mc.b, mcnemar_c=mc.c, mcnemar_p=mc.p_value, n=n,
    )  # fmt: skip


def check_significance(lab: Labelled | None, policy: GatePolicy, prereq: str) -> GateCheck:
    """A one-sided alarm: FAIL on a significant drop, PASS otherwise. Absence of a significant
    drop is not evidence of no drop; the non-inferiority rule above judges that."""
    if lab is None or prereq:
        return _error("mcnemar", prereq or "no paired predictions")
    pb, pc = lab.base, lab.cand
    mc = stats.mcnemar_exact(pb.pred == pb.label, pc.pred == pc.label)
    alpha = 1.0 - policy.confidence
    worse = mc.b > mc.c and mc.p_value < alpha
    msg = (
        f"exact McNemar p={mc.p_value:.3g} (baseline-only right {mc.b}, candidate-only right "
        f"{mc.c}), significant drop if p < {alpha:.3g}"
    )
    return verdict_check("mcnemar", FAIL if worse else PASS, msg, mc.p_value, alpha, b=mc.b, c=mc.c)


def check_agreement(lab: Labelled | None, policy: GatePolicy, prereq: str) -> GateCheck:
    """Wilson interval of the share of rows where both builds predict the same class vs the
    minimum: PASS above, FAIL below, INCONCLUSIVE straddling (with rows needed)."""
    if lab is None or prereq:
        return _error("agreement", prereq or "no paired predictions")
    pb, pc = lab.base, lab.cand
    n = len(pc)
    k = int(np.sum(pb.pred == pc.pred))
    agree = k / n
    limit = policy.min_prediction_agreement
    assert limit is not None
    low, high = stats.wilson_interval(k, n, policy.confidence)
    status = _three_way(low, high, limit)
    settle = ""
    if status == INCONCLUSIVE:
        needed = stats.proportion_samples_needed(k, n, limit, policy.confidence)
        settle = _rows_settle(needed, n, "agreement")
    msg = (
        f"{lab.candidate} agrees with {lab.baseline} on {agree * 100:.2f}% of {n} predictions, "
        f"{policy.confidence * 100:g}% CI [{low * 100:.2f}, {high * 100:.2f}]%, "
        f"limit {limit * 100:.2f}%"
    )
    return verdict_check(
        "agreement", status, msg, agree, limit, settle,
        flipped=n - k, ci_low=low, ci_high=high,
    )  # fmt: skip


def check_recall(lab: Labelled | None, policy: GatePolicy, prereq: str) -> GateCheck:
    """Per-class recall change with a paired bootstrap CI per class: a shift between classes
    (say, more false positives at equal accuracy) fails even when overall accuracy holds."""
    if lab is None or prereq:
        return _error("recall", prereq or "no paired predictions")
    pb, pc = lab.base, lab.cand
    limit = policy.max_recall_drop
    assert limit is not None
    rows = []
    for c in np.unique(pb.label):
        mask = pb.label == c
        ci = stats.paired_bootstrap(
            pb.label[mask], pb.pred[mask], pc.pred[mask], "accuracy",
            policy.bootstrap_resamples, policy.confidence, policy.seed,
        )  # fmt: skip
        fp = int(np.sum((pc.pred == c) & ~mask)) - int(np.sum((pb.pred == c) & ~mask))
        rows.append((ci, int(c), int(mask.sum()), fp, _three_way(ci.low, ci.high, -limit)))
    worst = min(rows, key=lambda r: (r[4] != FAIL, r[4] != INCONCLUSIVE, r[0].low))
    ci, c, n_c, fp, status = worst
    name = lab.class_names[c] if 0 <= c < len(lab.class_names) else str(c)
    settle = ""
    if status == INCONCLUSIVE:
        mask = pb.label == c
        b = int(np.sum((pb.pred == c) & (pc.pred != c) & mask))
        g = int(np.sum((pb.pred != c) & (pc.pred == c) & mask))
        need = stats.paired_samples_needed(b, g, n_c, limit, policy.confidence)
        share = n_c / len(pc)
        settle = _rows_settle(
            None if need is None else int(np.ceil(need / share)), len(pc), f"recall of {name!r}"
        )
    msg = (
        f"worst class {name!r}: recall {_pts(ci.diff)} pts, {policy.confidence * 100:g}% CI "
        f"[{_pts(ci.low)}, {_pts(ci.high)}] (n={n_c}, false positives {fp:+d}), "
        f"limit {limit * 100:.2f} pts drop"
    )
    details = {"per_class": {str(r[1]): {"drop": -r[0].diff, "fp_delta": r[3]} for r in rows}}
    return verdict_check("recall", status, msg, -ci.low, limit, settle, **details)
