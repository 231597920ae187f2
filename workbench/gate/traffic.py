"""Gate rules from unlabelled traffic: certify without labels, and label only the disagreements.

Where two builds agree on a row, their accuracy on it is the same, so over the traffic
``|Δ accuracy| <= disagreement rate``: a one-sided Clopper–Pearson upper bound on that rate
at or under the limit certifies the build (PASS); above it the evidence cannot tell
(INCONCLUSIVE, never FAIL: no label says the candidate is worse). When a person labels the
disagreeing rows, Δ on the whole traffic sample is known exactly, ``(c - b) / n`` with ``b``
baseline-only-right and ``c`` candidate-only-right rows; its CI then comes from sampling the
traffic only: Tango's score interval for a paired difference (it needs only b, c and n).

Accuracy evidence is one question: when one rule settles it (PASS or FAIL), the rules that
could not tell take that verdict, naming the rule that settled it; conflicting verdicts fail.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from workbench.gate.policy import GatePolicy
from workbench.gate.rules import Side
from workbench.results.fmt import signed
from workbench.results.gate import ERROR, FAIL, PASS, GateCheck
from workbench.results.traffic import TrafficRecord, load_traffic_record

INCONCLUSIVE = "inconclusive"
CERTIFY, TRAFFIC_ACCURACY = "traffic_certified", "traffic_accuracy"
_VERDICT = {PASS: "PASS", FAIL: "FAIL", INCONCLUSIVE: "INCONCLUSIVE", ERROR: "FAIL"}
MAX_ROWS = 10**9


# ---- statistics ----------------------------------------------------------------------------


def cp_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound of a proportion (k of n), via the beta quantile.

    Example::

        cp_upper(0, 1500)  # 0.00199...: no disagreement in 1,500 rows
    """
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


def _restricted_p(b: int, c: int, n: int, delta: float) -> float:
    """MLE of P(baseline-only right) given Δ = P(candidate-only) - P(baseline-only) (Tango)."""
    w = -b - c + (2 * n + b - c) * delta
    disc = max(w * w + 8.0 * n * b * delta * (1.0 - delta), 0.0)
    return max((-w + math.sqrt(disc)) / (4.0 * n), max(0.0, -delta))


def _score(b: int, c: int, n: int, delta: float) -> float:
    p = _restricted_p(b, c, n, delta)
    var = 2.0 * p + delta - delta * delta
    num = c - b - n * delta
    if var <= 1e-15:
        return math.copysign(math.inf, num) if num else 0.0
    return num / math.sqrt(n * var)


def paired_difference_ci(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's score CI of Δ = (c - b)/n for paired rows (b: baseline-only right, c: the reverse).

    Example::

        paired_difference_ci(b=18, c=14, n=1500)  # about (-0.0080, 0.0027)
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2.0))
    est, eps = (c - b) / n, 1e-12
    lo_end, hi_end = -1.0 + eps, 1.0 - eps
    if _score(b, c, n, lo_end) - z <= 0:
        low = -1.0
    else:
        low = est if est <= lo_end else brentq(lambda d: _score(b, c, n, d) - z, lo_end, est)
    if _score(b, c, n, hi_end) + z >= 0:
        high = 1.0
    else:
        high = est if est >= hi_end else brentq(lambda d: _score(b, c, n, d) + z, est, hi_end)
    return float(low), float(high)


def rows_needed(decides: Callable[[int], bool], n: int) -> int | None:
    """Smallest m >= n with ``decides(m)`` (rates held at what was observed); None past 1e9."""
    if decides(n):
        return n
    hi = n
    while not decides(hi):
        hi *= 2
        if hi > MAX_ROWS:
            return None
    lo = hi // 2
    while hi - lo > max(1, lo // 200):  # 0.5 % is precise enough for "about N rows"
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decides(mid) else (mid, hi)
    return hi


# ---- rules ---------------------------------------------------------------------------------


def _make(name: str, status: str, msg: str, observed: float | None, limit: float | None,
          **details: object) -> GateCheck:  # fmt: skip
    return GateCheck(name, status, f"{msg} → {_VERDICT[status]}", observed, limit, dict(details))


def _pts(x: float) -> str:
    return signed(x * 100)


def _pairs(rec: TrafficRecord, base: Side, cand: Side) -> tuple[np.ndarray, np.ndarray] | str:
    import pandas as pd

    out = []
    for s in (base, cand):
        tr = rec.build(s.build.name)
        if tr is None:
            return f"{s.build.name} was not scored on the traffic rows"
        out.append(pd.read_parquet(s.run_dir / tr.predictions_file)["pred"].to_numpy())
    if len(out[0]) != len(out[1]) or len(out[0]) != rec.n:
        return f"traffic predictions hold {len(out[0])} and {len(out[1])} rows, not {rec.n}"
    return out[0], out[1]


def certify(base: str, cand: str, k: int, n: int, limit: float, confidence: float) -> GateCheck:
    """PASS when the disagreement rate's upper bound is within the accuracy limit, else
    INCONCLUSIVE with the traffic rows (or labels) that would settle it."""
    upper = cp_upper(k, n, confidence)
    conf = f"{confidence * 100:g} %"
    head = (
        f"traffic: {cand} disagrees with {base} on {k} of {n} rows ({k / n * 100:.2f}%); "
        f"accuracy change at most {upper * 100:.2f} pts with {conf} confidence "
        f"(Clopper–Pearson), limit {limit * 100:.2f} pts, n={n}"
    )
    details: dict[str, object] = {"n": n, "disagreements": k, "cp_upper": upper}
    if upper <= limit + 1e-12:
        return _make(CERTIFY, PASS, f"{head}; certified", upper, limit, **details)
    rate = k / n
    need = None
    if rate < limit:
        need = rows_needed(lambda m: cp_upper(round(rate * m), m, confidence) <= limit, n)
    label = f"label the {k} disagreeing rows in disagreements.csv and pass them back"
    if need is None:
        settle = (
            f"the builds disagree too often for unlabelled rows alone to certify the limit: {label}"
        )
    else:
        settle = f"about {need} traffic rows at this disagreement rate would certify it, or {label}"
    details.update(settle=settle, rows_needed=need)
    return _make(
        CERTIFY, INCONCLUSIVE, f"{head}; not certified ({settle})", upper, limit, **details
    )


def traffic_accuracy(
    base: str, cand: str, b: int, c: int, n: int, limit: float, confidence: float
) -> GateCheck:
    """Three-way rule on the exact traffic Δ = (c - b)/n and its traffic-sampling CI."""
    low, high = paired_difference_ci(b, c, n, confidence)
    m = b + c
    msg = (
        f"traffic accuracy {cand} {_pts((c - b) / n)} pts vs {base} (exact on the sample: "
        f"{c} vs {b} right of {m} labelled disagreements), {confidence * 100:g}% CI "
        f"[{_pts(low)}, {_pts(high)}] (Tango score, traffic sampling), limit {limit * 100:.2f} "
        f"pts drop, n={n} traffic rows, {m} labelled disagreements"
    )
    details: dict[str, object] = dict(
        diff=(c - b) / n, ci_low=low, ci_high=high, n=n, labelled=m, b=b, c=c
    )
    if low >= -limit - 1e-12:
        return _make(TRAFFIC_ACCURACY, PASS, msg, -low, limit, **details)
    if high < -limit:
        return _make(TRAFFIC_ACCURACY, FAIL, msg, -low, limit, **details)

    def decides(rows: int) -> bool:
        lo, hi = paired_difference_ci(round(b * rows / n), round(c * rows / n), rows, confidence)
        return lo >= -limit or hi < -limit

    need = rows_needed(decides, n)
    settle = (
        "the traffic's accuracy change sits at the limit; more rows will not settle it"
        if need is None
        else f"about {need} traffic rows with their disagreements labelled would settle it"
    )
    details.update(settle=settle, rows_needed=need)
    return _make(TRAFFIC_ACCURACY, INCONCLUSIVE, f"{msg}; {settle}", -low, limit, **details)


def traffic_checks(base: Side, cand: Side, policy: GatePolicy) -> list[GateCheck]:
    """The traffic rules for one gate ([] without traffic, an accuracy limit, or one run)."""
    limit = policy.max_accuracy_drop
    if limit is None or policy.metric != "accuracy" or base.run_dir != cand.run_dir:
        return []
    rec = load_traffic_record(cand.run_dir)
    if rec is None:
        return []
    pairs = _pairs(rec, base, cand)
    if isinstance(pairs, str):
        return [_make(CERTIFY, ERROR, f"{CERTIFY}: {pairs}", None, None)]
    pb, pc = pairs
    differ = np.flatnonzero(pb != pc)
    bn, cn, conf = base.build.name, cand.build.name, policy.confidence
    checks = [certify(bn, cn, len(differ), rec.n, limit, conf)]
    if not rec.labels_file:
        return checks
    names = {r.idx: r.label for r in rec.disagreements}
    missing = [int(i) for i in differ if not names.get(int(i))]
    if missing:
        msg = f"{len(missing)} of {len(differ)} disagreeing traffic rows have no label"
        return [*checks, _make(TRAFFIC_ACCURACY, ERROR, f"{TRAFFIC_ACCURACY}: {msg}", None, None)]
    y = np.array([rec.labels.index(names[int(i)]) for i in differ], dtype=np.int64)
    b = int(np.sum(pb[differ] == y))
    c = int(np.sum(pc[differ] == y))
    return [*checks, traffic_accuracy(bn, cn, b, c, rec.n, limit, conf)]


def _decisive(check: GateCheck, limit: float) -> str | None:
    """PASS/FAIL when this accuracy check settles the question; None when it cannot tell."""
    if check.status == FAIL and check.name not in (CERTIFY, TRAFFIC_ACCURACY):
        high = check.details.get("ci_high")  # a two-way labelled rule: FAIL only if all of
        if isinstance(high, float) and high >= -limit:  # its CI is beyond the limit
            return None
    return check.status if check.status in (PASS, FAIL) else None


def with_traffic(
    checks: list[GateCheck], base: Side, cand: Side, policy: GatePolicy
) -> list[GateCheck]:
    """``checks`` plus the traffic rules; accuracy rules that cannot tell take the verdict of
    the one that can (a conflict fails), so unlabelled evidence settles a small labelled set."""
    extra = traffic_checks(base, cand, policy)
    if not extra:
        return checks
    out = [*checks, *extra]
    assert policy.max_accuracy_drop is not None  # traffic_checks returns [] otherwise
    names = {f"{policy.metric}_drop", CERTIFY, TRAFFIC_ACCURACY}
    acc = [c for c in out if c.name in names]
    verdicts = {c.name: v for c in acc if (v := _decisive(c, policy.max_accuracy_drop))}
    if not verdicts:
        return out
    settled = FAIL if FAIL in verdicts.values() else PASS
    by = next(n for n, v in verdicts.items() if v == settled)
    return [_settle(c, settled, by) if c.name in names and c.name not in verdicts else c
            for c in out]  # fmt: skip


def _settle(check: GateCheck, status: str, by: str) -> GateCheck:
    if check.status == ERROR:
        return check
    text = check.message.rsplit(" → ", 1)[0]
    msg = f"{text} → {_VERDICT[status]} (settled by {by})"
    details = {**check.details, "settled_by": by, "own_status": check.status}
    return dataclasses.replace(check, status=status, message=msg, details=details)
