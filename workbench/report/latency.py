"""Latency the report can trust: speed-up intervals from the samples, and noise warnings.

A speed-up is the ratio of two medians measured once each; a seeded bootstrap of that
ratio over ``samples_ms`` says how much of it is timing noise. Noise checks read one
record's samples: a heavy tail (p99/p50), a wide spread (IQR/median) and drift between
the first and second half of the runs (the machine's load changed while timing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.results.gate import GateDecision
from workbench.results.noise import MAX_DRIFT, MAX_SPREAD, MAX_TAIL, MIN_RUNS, Noise, noise

__all__ = ["MAX_DRIFT", "MAX_SPREAD", "MAX_TAIL", "MIN_RUNS", "Noise", "noise"]
from workbench.results.records import BuildResult, LatencyResult, PairedSpeedup

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
CHUNK = 256  # resamples per vectorised step (bounds memory for long sample lists)
MAX_CI_WIDTH = 0.25  # (high - low) / speed-up

Shape = tuple[int, int]


@dataclass(frozen=True)
class SpeedupCI:
    """Median-latency ratio baseline / build with a percentile bootstrap interval."""

    speedup: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int


def _median_resamples(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    out = np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        k = min(CHUNK, resamples - start)
        out[start : start + k] = np.median(x[rng.integers(0, x.size, (k, x.size))], axis=1)
    return out


def median_ci(
    samples_ms: Sequence[float],
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of one record's median latency (None without samples)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size < 2 or not np.all(np.isfinite(x)):
        return None
    meds = _median_resamples(x, np.random.default_rng(seed), resamples)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(meds, [tail, 100 - tail])
    return float(low), float(high)


def speedup_ci(
    base: LatencyResult,
    cand: LatencyResult,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> SpeedupCI | None:
    """``base.p50 / cand.p50`` with a seeded bootstrap CI of the ratio of sample medians.

    The two sample lists are resampled independently (they are separate timing loops).
    Example: ``speedup_ci(ort_fp32_b8, int8_b8)`` -> SpeedupCI(speedup=1.59, low=1.52, ...).
    """
    b = np.asarray(base.samples_ms, dtype=np.float64)
    c = np.asarray(cand.samples_ms, dtype=np.float64)
    if b.size < 2 or c.size < 2 or cand.p50_ms <= 0 or not np.all(np.isfinite(np.r_[b, c])):
        return None
    if np.any(c <= 0):
        return None
    rng = np.random.default_rng(seed)
    ratio = _median_resamples(b, rng, resamples) / _median_resamples(c, rng, resamples)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(ratio, [tail, 100 - tail])
    point = base.p50_ms / cand.p50_ms
    return SpeedupCI(point, float(low), float(high), confidence, resamples, seed)


def gate_shape(decision: GateDecision | None) -> Shape | None:
    """The (batch, seq) the gate's latency rules judged, or None if it judged no latency."""
    if decision is None:
        return None
    p = decision.policy
    if p.min_speedup is None and p.max_p99_ms is None:
        return None
    return (p.latency_batch, p.latency_seq)


def shapes(builds: Sequence[BuildResult]) -> list[Shape]:
    """Every measured (batch, seq), sorted."""
    return sorted({(x.batch_size, x.seq_len) for b in builds for x in b.latency})


def shape_label(shape: Shape) -> str:
    return f"batch {shape[0]} × seq {shape[1]}"


def find_build(builds: Sequence[BuildResult], backend: str, precision: str) -> BuildResult | None:
    """The first build of ``backend`` at ``precision`` (the FP32 baselines speed-ups use)."""
    return next((b for b in builds if (b.backend, b.precision) == (backend, precision)), None)


def at(build: BuildResult | None, shape: Shape | None) -> LatencyResult | None:
    """``build``'s latency record at ``shape``, if measured."""
    if build is None or shape is None:
        return None
    return next((x for x in build.latency if (x.batch_size, x.seq_len) == shape), None)


def speedup_cell(base: BuildResult | None, build: BuildResult, shape: Shape | None) -> dict | None:
    """Template data for one speed-up: point, CI (None without samples), baseline name."""
    lb, lc = at(base, shape), at(build, shape)
    if base is None or lb is None or lc is None or lc.p50_ms <= 0:
        return None
    ci = speedup_ci(lb, lc) if base is not build else None
    return {
        "x": lb.p50_ms / lc.p50_ms,
        "low": ci.low if ci else None,
        "high": ci.high if ci else None,
        "vs": base.name,
    }


def latency_rows(builds: Sequence[BuildResult], gate: Shape | None) -> list[dict]:
    """Every measured shape of every build (grouped by shape), with speed-up CIs and noise."""
    torch32 = find_build(builds, "pytorch", "fp32")
    ort32 = find_build(builds, "onnxruntime", "fp32")
    rows = []
    for shape in shapes(builds):
        for b in builds:
            x = at(b, shape)
            if x is None:
                continue
            n = noise(x)
            rows.append(
                {
                    "name": b.name,
                    "batch": x.batch_size,
                    "seq": x.seq_len,
                    "is_gate": shape == gate,
                    "p50": x.p50_ms,
                    "p90": x.p90_ms,
                    "p99": x.p99_ms,
                    "tail": n.tail,
                    "tail_high": n.tail > MAX_TAIL,
                    "spread": n.spread,
                    "spread_high": n.spread > MAX_SPREAD,
                    "noisy": bool(n.warnings),
                    "warnings": n.warnings,
                    "throughput": x.throughput_seq_per_s,
                    "iterations": x.iterations,
                    "timer": x.timer,
                    "copies": x.includes_host_device_copies,
                    "speedup_torch": speedup_cell(torch32, b, shape),
                    "speedup_ort": speedup_cell(ort32, b, shape),
                }
            )
    return rows


def paired_at(
    speedups: Sequence[PairedSpeedup], base: str, cand: str, shape: Shape
) -> PairedSpeedup | None:
    """The run's paired, interleaved timing of ``base`` vs ``cand`` at ``shape``, if any."""
    for sp in speedups:
        if (sp.baseline, sp.candidate, sp.batch, sp.seq) == (base, cand, *shape):
            return sp
    return None


def paired_note(sp: PairedSpeedup) -> str:
    """One line on how a paired speed-up was timed and what the machine was doing."""
    return (
        f"paired, interleaved blocks: {sp.blocks_used} used, {sp.blocks_dropped} starved "
        f"dropped; {sp.load_avg:.1f} other runnable tasks on {sp.cores} cores, CPU steal "
        f"{sp.steal_pct:.0f}%, CPU/wall {sp.cpu_per_wall:.2f}"
    )


def gate_latency(
    builds: Sequence[BuildResult],
    run_id: str,
    decision: GateDecision,
    speedups: Sequence[PairedSpeedup] = (),
) -> dict | None:
    """What the gate's speed-up rests on: its shape, the ratio's CI, and why not to trust it.

    Only for a gate whose baseline and candidate are builds of this run (else None). A paired,
    interleaved timing of the pair (``speedups``) replaces the ratio of separate medians.
    """
    shape = gate_shape(decision)
    b_run, _, b_name = decision.baseline.partition("/")
    c_run, _, c_name = decision.candidate.partition("/")
    if shape is None or b_run != run_id or c_run != run_id:
        return None
    by = {b.name: b for b in builds}
    base = by.get(decision.policy.speedup_baseline or b_name)
    cand = by.get(c_name)
    lb, lc = at(base, shape), at(cand, shape)
    if base is None or cand is None or lb is None or lc is None:
        return None
    ci = speedup_ci(lb, lc)
    warnings = [
        f"{name}: {w}" for name, x in ((base.name, lb), (cand.name, lc)) for w in noise(x).warnings
    ]
    sp = paired_at(speedups, base.name, cand.name, shape)
    if sp is not None:
        ci = SpeedupCI(sp.ratio, sp.ci_low, sp.ci_high, sp.confidence, RESAMPLES, SEED)
        if sp.contended:
            warnings.append(
                f"the machine was busy while timing ({sp.reason}): re-run on a quiet one"
            )
    limit = decision.policy.min_speedup
    if ci is not None and limit is not None and ci.low < limit <= ci.high:
        warnings.append(
            f"the limit ×{limit:.2f} lies inside the speed-up's {ci.confidence:.0%} CI "
            f"[×{ci.low:.2f}, ×{ci.high:.2f}]: a re-run could flip the speed-up check"
        )
    if ci is not None and ci.speedup > 0 and (ci.high - ci.low) / ci.speedup > MAX_CI_WIDTH:
        warnings.append(
            f"the speed-up's {ci.confidence:.0%} CI [×{ci.low:.2f}, ×{ci.high:.2f}] is wider than "
            f"{MAX_CI_WIDTH:.0%} of ×{ci.speedup:.2f}: latency too noisy to trust; re-time on a "
            "quiet machine"
        )
    return {
        "shape": shape,
        "label": shape_label(shape),
        "baseline": base.name,
        "candidate": cand.name,
        "ci": ci,
        "limit": limit,
        "warnings": warnings,
        "paired": paired_note(sp) if sp is not None else "",
    }
