"""The gate's rules: each turns two builds' records into one GateCheck (pass, fail or error).

A rule that cannot be evaluated (missing data, unpaired samples, different hardware) returns an
``error`` check, which fails the gate: the gate fails closed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import ResultsError
from workbench.gate import stats
from workbench.gate.pairs import Predictions, load_predictions, pair
from workbench.gate.policy import GatePolicy
from workbench.results.records import BuildResult, LatencyResult, PairedSpeedup, RunResult

PASS, FAIL, ERROR = "pass", "fail", "error"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class GateCheck:
    """One rule's outcome; ``error`` means it could not be evaluated (counts as a failure)."""

    name: str
    status: str  # "pass" | "fail" | "error"
    message: str
    observed: float | None
    limit: float | None
    details: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.status == PASS


@dataclass(frozen=True)
class Side:
    run: RunResult
    build: BuildResult
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.run.run_id}/{self.build.name}"


def _check(
    name: str, ok: bool, message: str, observed: Any = None, limit: Any = None, **details: Any
) -> GateCheck:
    verdict = "PASS" if ok else "FAIL"
    return GateCheck(
        name, PASS if ok else FAIL, f"{message} → {verdict}", _num(observed), _num(limit), details
    )


def _error(name: str, message: str, **details: Any) -> GateCheck:
    return GateCheck(name, ERROR, f"{name}: {message} → FAIL", None, None, details)


def without_verdict(message: str) -> str:
    return message.rsplit(" → ", 1)[0]


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _pts(x: float) -> str:
    """A metric difference in points with a real minus sign: −1.40 / +0.30."""
    return f"{x * 100:+.2f}".replace("-", "−")


def check_test_set(base: Side, cand: Side) -> GateCheck:
    hb, hc = base.run.test_set_sha256, cand.run.test_set_sha256
    if not hb or not hc:
        return _error("test_set", "a run does not record its test-set hash; cannot pair them")
    ok = hb == hc
    msg = "same test set" if ok else "test sets differ"
    return _check(
        "test_set", ok, f"{msg} (sha256 {hb[:12]} vs {hc[:12]})", baseline=hb, candidate=hc
    )


def _nonfinite(obj: Any, path: str) -> list[str]:
    """Paths of NaN/inf floats inside a record."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: list[str] = []
        for f in dataclasses.fields(obj):
            out += _nonfinite(getattr(obj, f.name), f"{path}.{f.name}")
        return out
    if isinstance(obj, list | tuple):
        bad = [i for i, v in enumerate(obj) if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            return [f"{path}[{bad[0]}]" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "")]
        return [p for i, v in enumerate(obj) for p in _nonfinite(v, f"{path}[{i}]")]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [path]
    return []


def check_finite(sides: list[Side]) -> GateCheck:
    bad: list[str] = []
    seen = set()
    for s in sides:
        if s.label not in seen:
            seen.add(s.label)
            bad += _nonfinite(s.build, s.label)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        return _check("finite", False, f"NaN/inf in the records: {shown}", fields=bad)
    return _check("finite", True, "no NaN/inf in the compared records")


def check_samples(
    base: Side, cand: Side, policy: GatePolicy
) -> tuple[GateCheck, tuple[Predictions, Predictions] | None]:
    for s in (base, cand):
        if s.build.accuracy is None:
            return _error("samples", f"{s.label} has no accuracy result (metric missing)"), None
    try:
        pb = load_predictions(base.run_dir, base.build)
        pc = load_predictions(cand.run_dir, cand.build)
        pair(pb, pc)
    except ResultsError as exc:
        return _error("samples", str(exc)), None
    problems = []
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
        return _error("samples", "; ".join(problems) + "; re-run the evaluation"), None
    n = len(pc)
    ok = n >= policy.min_samples
    check = _check(
        "samples", ok, f"n={n} paired samples (minimum {policy.min_samples})", n, policy.min_samples
    )
    return check, (pb, pc) if ok else None


def check_metric(
    base: Side,
    cand: Side,
    paired: tuple[Predictions, Predictions] | None,
    policy: GatePolicy,
    prereq: str,
) -> GateCheck:
    name = f"{policy.metric}_drop"
    if paired is None or prereq:
        return _error(name, prereq or "no paired predictions")
    pb, pc = paired
    ci = stats.paired_bootstrap(
        pc.label,
        pb.pred,
        pc.pred,
        policy.metric,
        policy.bootstrap_resamples,
        policy.confidence,
        policy.seed,
    )
    mc = stats.mcnemar_exact(pb.pred == pb.label, pc.pred == pc.label)
    drop_upper = -ci.low
    limit = policy.max_accuracy_drop
    assert limit is not None
    ok = bool(drop_upper <= limit + 1e-12)
    conf = f"{policy.confidence * 100:g}%"
    msg = (
        f"{cand.build.name} {policy.metric} {_pts(ci.diff)} pts vs {base.build.name}, "
        f"{conf} CI [{_pts(ci.low)}, {_pts(ci.high)}], limit {limit * 100:.2f} pts drop "
        f"(worst case {max(drop_upper, 0.0) * 100:.2f}), "
        f"n={len(pc)}, McNemar p={mc.p_value:.3g}"
    )
    return _check(
        name,
        ok,
        msg,
        drop_upper,
        limit,
        diff=ci.diff,
        ci_low=ci.low,
        ci_high=ci.high,
        confidence=ci.confidence,
        resamples=ci.resamples,
        seed=ci.seed,
        baseline_value=stats.metric_value(policy.metric, pb.label, pb.pred),
        candidate_value=stats.metric_value(policy.metric, pc.label, pc.pred),
        mcnemar_b=mc.b,
        mcnemar_c=mc.c,
        mcnemar_p=mc.p_value,
        n=len(pc),
    )


def check_significance(
    paired: tuple[Predictions, Predictions] | None, policy: GatePolicy, prereq: str
) -> GateCheck:
    if paired is None or prereq:
        return _error("mcnemar", prereq or "no paired predictions")
    pb, pc = paired
    mc = stats.mcnemar_exact(pb.pred == pb.label, pc.pred == pc.label)
    alpha = 1.0 - policy.confidence
    worse = mc.b > mc.c
    ok = not (worse and mc.p_value < alpha)
    msg = (
        f"exact McNemar p={mc.p_value:.3g} (baseline-only right {mc.b}, candidate-only right "
        f"{mc.c}), significant drop if p < {alpha:.3g}"
    )
    return _check("mcnemar", ok, msg, mc.p_value, alpha, b=mc.b, c=mc.c)


def check_agreement(
    base: Side,
    cand: Side,
    paired: tuple[Predictions, Predictions] | None,
    policy: GatePolicy,
    prereq: str,
) -> GateCheck:
    if paired is None or prereq:
        return _error("agreement", prereq or "no paired predictions")
    pb, pc = paired
    agree = float(np.mean(pb.pred == pc.pred))
    limit = policy.min_prediction_agreement
    assert limit is not None
    ok = agree >= limit
    msg = (
        f"{cand.build.name} agrees with {base.build.name} on {agree * 100:.2f}% of {len(pc)} "
        f"predictions, limit {limit * 100:.2f}%"
    )
    return _check("agreement", ok, msg, agree, limit, flipped=int(np.sum(pb.pred != pc.pred)))


def check_recall(
    base: Side,
    cand: Side,
    paired: tuple[Predictions, Predictions] | None,
    policy: GatePolicy,
    prereq: str,
) -> GateCheck:
    """Per-class recall: a shift between classes (say, more false positives at equal accuracy)
    fails even when overall accuracy holds."""
    if paired is None or prereq:
        return _error("recall", prereq or "no paired predictions")
    pb, pc = paired
    limit = policy.max_recall_drop
    assert limit is not None
    rows = []
    for c in np.unique(pb.label):
        mask = pb.label == c
        before, after = float(np.mean(pb.pred[mask] == c)), float(np.mean(pc.pred[mask] == c))
        fp = int(np.sum((pc.pred == c) & ~mask)) - int(np.sum((pb.pred == c) & ~mask))
        rows.append((before - after, int(c), before, after, int(mask.sum()), fp))
    drop, c, before, after, n, fp = max(rows)
    names = cand.run.labels
    name = names[c] if 0 <= c < len(names) else str(c)
    msg = (
        f"worst class {name!r}: recall {before * 100:.2f}% -> {after * 100:.2f}% "
        f"(n={n}, false positives {fp:+d}), limit {limit * 100:.2f} pts drop"
    )
    details = {"per_class": {str(r[1]): {"drop": r[0], "fp_delta": r[5]} for r in rows}}
    return _check("recall", drop <= limit, msg, drop, limit, **details)


def _latency_at(side: Side, policy: GatePolicy) -> LatencyResult | str:
    for lat in side.build.latency:
        if lat.batch_size == policy.latency_batch and lat.seq_len == policy.latency_seq:
            return lat
    have = ", ".join(f"{x.batch_size}×{x.seq_len}" for x in side.build.latency) or "none"
    return (
        f"{side.label} has no latency at batch {policy.latency_batch} × seq "
        f"{policy.latency_seq} (it has: {have}); set latency_batch/latency_seq in the policy"
    )


def hardware(run: RunResult, build: BuildResult) -> str:
    """What a latency number depends on: the device, and the host CPU and core count."""
    gpu = f", GPU {run.provenance.gpu}" if build.device != "cpu" and run.provenance.gpu else ""
    return f"device {build.device}, CPU {run.provenance.cpu} ×{run.provenance.cpu_count} cores{gpu}"


def check_speedup(
    base: Side, cand: Side, policy: GatePolicy, allow_cross_device: bool
) -> GateCheck:
    lb, lc = _latency_at(base, policy), _latency_at(cand, policy)
    for lat in (lb, lc):
        if isinstance(lat, str):
            return _error("speedup", lat)
    assert isinstance(lb, LatencyResult) and isinstance(lc, LatencyResult)
    hb, hc = hardware(base.run, base.build), hardware(cand.run, cand.build)
    if hb != hc and not allow_cross_device:
        return _error(
            "speedup",
            f"refusing to compare latency across hardware (baseline: {hb}; candidate: {hc}): "
            "a speed-up between machines measures the machines, not the build; re-time both "
            "on one machine, or pass --allow-cross-device to accept it",
            baseline_hardware=hb,
            candidate_hardware=hc,
        )
    paired = _paired_at(base, cand, policy)
    if paired is not None:
        return _paired_speedup(base, cand, paired, policy)
    if not (lc.p50_ms > 0 and lb.p50_ms > 0):
        return _error("speedup", f"non-positive p50 latency ({lb.p50_ms}, {lc.p50_ms})")
    speedup = lb.p50_ms / lc.p50_ms
    limit = policy.min_speedup
    assert limit is not None
    same_run = base.run.run_id == cand.run.run_id
    where = "" if same_run else " (different runs: not measured side by side)"
    msg = (
        f"{cand.build.name} speed-up ×{speedup:.2f} vs {base.build.name} (p50 {lb.p50_ms:.2f} → "
        f"{lc.p50_ms:.2f} ms, batch {lc.batch_size} × seq {lc.seq_len}){where}, "
        f"limit ×{limit:.2f}"
    )
    return _check(
        "speedup",
        speedup >= limit,
        msg,
        speedup,
        limit,
        baseline_p50_ms=lb.p50_ms,
        candidate_p50_ms=lc.p50_ms,
        side_by_side=same_run,
        cross_device=hb != hc,
    )


def _paired_at(base: Side, cand: Side, policy: GatePolicy) -> PairedSpeedup | None:
    """The run's paired, interleaved timing of exactly this pair at the gate's shape, if any."""
    if base.run.run_id != cand.run.run_id or base.run_dir != cand.run_dir:
        return None
    want = (base.build.name, cand.build.name, policy.latency_batch, policy.latency_seq)
    for sp in cand.run.speedups:
        if (sp.baseline, sp.candidate, sp.batch, sp.seq) == want:
            return sp
    return None


def speed_verdict(sp: PairedSpeedup, limit: float) -> tuple[str, str]:
    """(status, what would settle it) of a paired speed-up against ``limit``: PASS when the
    whole CI clears it, FAIL when the whole CI is below it on a quiet machine, else
    INCONCLUSIVE."""
    if sp.ci_low >= limit:
        return PASS, ""
    if sp.ci_high < limit and not sp.contended:
        return FAIL, ""
    if sp.contended:
        return INCONCLUSIVE, f"the machine was busy ({sp.reason}): re-run on a quiet one"
    ci = f"[×{sp.ci_low:.2f}, ×{sp.ci_high:.2f}]"
    return INCONCLUSIVE, f"the CI {ci} straddles the limit ×{limit:.2f}: re-run with more blocks"


def _paired_speedup(base: Side, cand: Side, sp: PairedSpeedup, policy: GatePolicy) -> GateCheck:
    """PASS when the whole CI clears the limit, FAIL when it is wholly below on a quiet
    machine, INCONCLUSIVE otherwise, with what would settle it."""
    limit = policy.min_speedup
    assert limit is not None
    ci = f"[×{sp.ci_low:.2f}, ×{sp.ci_high:.2f}]"
    msg = (
        f"{cand.build.name} speed-up ×{sp.ratio:.2f} vs {base.build.name}, "
        f"{sp.confidence * 100:g}% CI {ci} (paired, interleaved: {sp.blocks_used} blocks used, "
        f"{sp.blocks_dropped} starved dropped, batch {sp.batch} × seq {sp.seq}), "
        f"limit ×{limit:.2f}"
    )
    status, settle = speed_verdict(sp, limit)
    return GateCheck(
        "speedup",
        status,
        f"{msg}{'; ' + settle if settle else ''} → {status.upper()}",
        sp.ratio,
        limit,
        {
            "settle": settle,
            "paired": True,
            "ci_low": sp.ci_low,
            "ci_high": sp.ci_high,
            "confidence": sp.confidence,
            "blocks_used": sp.blocks_used,
            "blocks_dropped": sp.blocks_dropped,
            "load_avg": sp.load_avg,
            "steal_pct": sp.steal_pct,
            "cpu_per_wall": sp.cpu_per_wall,
            "cores": sp.cores,
            "contended": sp.contended,
            "side_by_side": True,
            "cross_device": False,
        },
    )


def check_p99(cand: Side, policy: GatePolicy) -> GateCheck:
    lat = _latency_at(cand, policy)
    if isinstance(lat, str):
        return _error("p99", lat)
    limit = policy.max_p99_ms
    assert limit is not None
    msg = (
        f"{cand.build.name} p99 {lat.p99_ms:.2f} ms at batch {lat.batch_size} × seq "
        f"{lat.seq_len} ({lat.iterations} runs), limit {limit:.2f} ms"
    )
    return _check("p99", lat.p99_ms <= limit, msg, lat.p99_ms, limit)


def check_memory(cand: Side, policy: GatePolicy) -> GateCheck:
    limit = policy.max_peak_memory_mb
    assert limit is not None
    rss = cand.build.peak_rss_mb
    if not math.isfinite(rss):
        return _error("peak_memory", f"{cand.label} has no peak memory measurement")
    msg = f"{cand.build.name} peak memory {rss:.0f} MB (host RSS), limit {limit:.0f} MB"
    return _check(
        "peak_memory",
        rss <= limit,
        msg,
        rss,
        limit,
        peak_device_mem_mb=cand.build.peak_device_mem_mb,
    )
