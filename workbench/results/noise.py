"""Noise notes on one latency record: heavy tail, wide spread, drift while timing.

The gate puts these in its decision's ``warnings`` (terminal, gate.md, JUnit, gate.json) and the
report shows them next to the latency tables; both read them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workbench.results.records import LatencyResult

MAX_TAIL = 2.0  # p99 / p50
MAX_SPREAD = 0.25  # interquartile range / median
MAX_DRIFT = 0.10  # |median(first half) - median(second half)| / median
MIN_RUNS = 20

__all__ = ["MAX_DRIFT", "MAX_SPREAD", "MAX_TAIL", "MIN_RUNS", "Noise", "noise"]


@dataclass(frozen=True)
class Noise:
    """How trustworthy one latency record is; ``warnings`` is empty when it looks clean."""

    tail: float  # p99 / p50
    spread: float  # IQR / median
    drift: float  # relative difference of the two halves' medians
    warnings: list[str]


def noise(lat: LatencyResult) -> Noise:
    """Tail, spread and drift of one record's samples, with a warning for each over its limit."""
    x = np.asarray(lat.samples_ms, dtype=np.float64)
    tail = lat.p99_ms / lat.p50_ms if lat.p50_ms > 0 else math.nan
    spread = drift = math.nan
    if x.size >= 4 and np.all(np.isfinite(x)):
        med = float(np.median(x))
        q1, q3 = np.percentile(x, [25, 75])
        spread = float((q3 - q1) / med) if med > 0 else math.nan
        half = x.size // 2
        drift = float(abs(np.median(x[:half]) - np.median(x[half:])) / med) if med > 0 else math.nan
    out = []
    if lat.iterations < MIN_RUNS:
        out.append(f"only {lat.iterations} timed runs (at least {MIN_RUNS} for stable percentiles)")
    if tail > MAX_TAIL:
        out.append(f"p99 is {tail:.1f}× p50 (limit {MAX_TAIL:g}×): heavy tail, likely interference")
    if spread > MAX_SPREAD:
        out.append(f"interquartile range is {spread:.0%} of the median (limit {MAX_SPREAD:.0%})")
    if drift > MAX_DRIFT:
        out.append(
            f"median of the second half of the runs differs by {drift:.0%} from the first "
            f"(limit {MAX_DRIFT:.0%}): the machine's load changed while timing"
        )
    if not x.size:
        out.append("no per-run samples saved: noise cannot be judged")
    return Noise(tail, spread, drift, out)
