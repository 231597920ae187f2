"""The gate's rules over records: each turns two builds' records into one GateCheck.

A check says pass, fail, inconclusive (the evidence cannot tell; ``details["settle"]`` and the
message say what would settle it) or error: a rule that cannot be evaluated (missing data,
unpaired samples, different hardware) counts as a failure, so the gate fails closed.
The rules over labelled predictions live in ``gate/accuracy.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.evaluate.paired import UNBOUNDED
from workbench.gate.policy import GatePolicy
from workbench.results.fmt import signed
from workbench.results.gate import ERROR, FAIL, INCONCLUSIVE, PASS, GateCheck
from workbench.results.noise import noise
from workbench.results.predictions import Predictions
from workbench.results.records import (
    BuildResult,
    LatencyResult,
    PairedSpeedup,
    RunResult,
    hardware,
)

VERDICT_WORD = {PASS: "PASS", FAIL: "FAIL", INCONCLUSIVE: "INCONCLUSIVE", ERROR: "FAIL"}


@dataclass(frozen=True)
class Side:
    """One build as the judge sees it: its records and (loaded once) its labelled predictions;
    ``predictions`` is None with the reason in ``predictions_error`` when they are unusable."""

    run: RunResult
    build: BuildResult
    run_dir: Path
    predictions: Predictions | None = None
    predictions_error: str = ""

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


def verdict_check(
    name: str,
    status: str,
    message: str,
    observed: Any = None,
    limit: Any = None,
    settle: str = "",
    **details: Any,
) -> GateCheck:
    """A check with any of the three verdicts; an inconclusive one must say what settles it."""
    if status == INCONCLUSIVE:
        if not settle:
            raise ValueError(f"inconclusive check {name!r} must say what would settle it")
        details = {**details, "settle": settle}
        message = f"{message}; {settle}"
    return GateCheck(
        name, status, f"{message} → {VERDICT_WORD[status]}", _num(observed), _num(limit), details
    )


def _error(name: str, message: str, **details: Any) -> GateCheck:
    return GateCheck(name, ERROR, f"{name}: {message} → FAIL", None, None, details)


def without_verdict(message: str) -> str:
    return message.rsplit(" → ", 1)[0]


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _pts(x: float) -> str:
    """A metric difference in points with a real minus sign: −1.40 / +0.30."""
    return signed(x * 100)


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


def _latency_at(side: Side, policy: GatePolicy) -> LatencyResult | str:
    for lat in side.build.latency:
        if lat.batch_size == policy.latency_batch and lat.seq_len == policy.latency_seq:
            return lat
    have = ", ".join(f"{x.batch_size}×{x.seq_len}" for x in side.build.latency) or "none"
    return (
        f"{side.label} has no latency at batch {policy.latency_batch} × seq "
        f"{policy.latency_seq} (it has: {have}); set latency_batch/latency_seq in the policy"
    )


# A busy machine moved one build's unpaired p50 by up to 2.5x between runs (issue 19): noisy
# unpaired timings decide only a speed-up at least this factor away from the limit.
UNPAIRED_MARGIN = 2.5


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
    details = {
        "baseline_p50_ms": lb.p50_ms,
        "candidate_p50_ms": lc.p50_ms,
        "side_by_side": same_run,
        "cross_device": hb != hc,
    }
    noisy = [w for lat in (lb, lc) for w in noise(lat).warnings]
    status, settle = (PASS if speedup >= limit else FAIL), ""
    clear = speedup >= limit * UNPAIRED_MARGIN or speedup * UNPAIRED_MARGIN < limit
    if noisy and base.build.device == "cpu" and not clear:
        # unpaired CPU timings the machine disturbed, not far enough from the limit to tell
        status = INCONCLUSIVE
        settle = (
            f"the timings are noisy ({noisy[0]}): re-time both builds in one run on a quiet "
            "machine, where they are timed paired and interleaved"
        )
    return verdict_check("speedup", status, msg, speedup, limit, settle, **details)


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
    if sp.ci_high >= UNBOUNDED:
        return INCONCLUSIVE, "too few blocks for a CI: re-run with more blocks"
    ci = f"[×{sp.ci_low:.2f}, ×{sp.ci_high:.2f}]"
    return INCONCLUSIVE, f"the CI {ci} straddles the limit ×{limit:.2f}: re-run with more blocks"


def _paired_speedup(base: Side, cand: Side, sp: PairedSpeedup, policy: GatePolicy) -> GateCheck:
    """PASS when the whole CI clears the limit, FAIL when it is wholly below on a quiet
    machine, INCONCLUSIVE otherwise, with what would settle it."""
    limit = policy.min_speedup
    assert limit is not None
    how = (
        f"(paired, interleaved: {sp.blocks_used} blocks used, {sp.blocks_dropped} starved "
        f"dropped, batch {sp.batch} × seq {sp.seq}), limit ×{limit:.2f}"
    )
    if sp.ci_high >= UNBOUNDED:  # too few blocks survived for an interval: no number to quote
        msg = f"{cand.build.name} speed-up vs {base.build.name}: too few blocks for a CI {how}"
    else:
        ci = f"[×{sp.ci_low:.2f}, ×{sp.ci_high:.2f}]"
        msg = (
            f"{cand.build.name} speed-up ×{sp.ratio:.2f} vs {base.build.name}, "
            f"{sp.confidence * 100:g}% CI {ci} {how}"
        )
    status, settle = speed_verdict(sp, limit)
    return verdict_check(
        "speedup",
        status,
        msg,
        sp.ratio,
        limit,
        settle,
        **{
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
