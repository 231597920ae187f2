"""Paired statistics for A/B gates: exact McNemar and a seeded paired bootstrap.

Both builds predict the same test samples, so the samples are paired: the
bootstrap resamples sample indices once and scores both builds on the same
resample, and McNemar looks only at the samples on which exactly one build is right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workbench.errors import ConfigError

CHUNK = 256  # resamples scored at once (bounds memory at CHUNK * n indices)


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test: ``b`` = baseline right & candidate wrong, ``c`` = the reverse."""

    b: int
    c: int
    p_value: float


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate and percentile interval of ``metric(candidate) - metric(baseline)``."""

    diff: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int


def mcnemar_exact(baseline_correct: np.ndarray, candidate_correct: np.ndarray) -> McNemarResult:
    """Two-sided exact McNemar test (binomial test on the discordant pairs, p = 0.5).

    Example::

        mcnemar_exact(np.array([1, 1, 0]), np.array([1, 0, 0])).p_value  # 1.0
    """
    from scipy.stats import binomtest

    base = np.asarray(baseline_correct, dtype=bool)
    cand = np.asarray(candidate_correct, dtype=bool)
    if base.shape != cand.shape:
        raise ConfigError(f"paired arrays differ in shape: {base.shape} vs {cand.shape}")
    b = int(np.sum(base & ~cand))
    c = int(np.sum(~base & cand))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(b=b, c=c, p_value=min(1.0, p))


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Share of predictions equal to the labels."""
    return float(np.mean(np.asarray(labels) == np.asarray(preds)))


def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """Macro-F1 over the labels present in ``labels`` or ``preds`` (scikit-learn's default)."""
    return float(_macro_f1_batched(np.asarray(labels)[None, :], np.asarray(preds)[None, :])[0])


def metric_value(metric: str, labels: np.ndarray, preds: np.ndarray) -> float:
    """``accuracy`` or ``macro_f1`` of one build."""
    if metric == "accuracy":
        return accuracy(labels, preds)
    if metric == "macro_f1":
        return macro_f1(labels, preds)
    raise ConfigError(f"metric {metric!r} is not supported; use 'accuracy' or 'macro_f1'")


def _macro_f1_batched(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of (R, n) label / prediction matrices."""
    k = int(max(labels.max(initial=0), preds.max(initial=0))) + 1
    r = labels.shape[0]
    codes = labels.astype(np.int64) * k + preds.astype(np.int64)
    codes += (np.arange(r, dtype=np.int64) * k * k)[:, None]
    conf = np.bincount(codes.ravel(), minlength=r * k * k).reshape(r, k, k)
    tp = np.diagonal(conf, axis1=1, axis2=2).astype(np.float64)
    denom = conf.sum(axis=2) + conf.sum(axis=1)  # true count + predicted count = 2tp+fp+fn
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    return np.asarray(f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def paired_bootstrap(
    labels: np.ndarray,
    baseline_pred: np.ndarray,
    candidate_pred: np.ndarray,
    metric: str = "accuracy",
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Seeded paired bootstrap percentile CI of ``metric(candidate) - metric(baseline)``.

    Example::

        ci = paired_bootstrap(y, base, cand, "accuracy", 2000, 0.95, seed=0)
        drop_upper = -ci.low   # the worst plausible drop
    """
    y = np.asarray(labels)
    pb = np.asarray(baseline_pred)
    pc = np.asarray(candidate_pred)
    n = y.shape[0]
    if n == 0 or pb.shape != y.shape or pc.shape != y.shape:
        raise ConfigError(
            f"paired bootstrap needs equal non-empty arrays, got {y.shape}, {pb.shape}, {pc.shape}"
        )
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence {confidence} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples, dtype=np.float64)
    cb = (pb == y).astype(np.float64)
    cc = (pc == y).astype(np.float64)
    for start in range(0, resamples, CHUNK):
        m = min(CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        if metric == "accuracy":
            diffs[start : start + m] = (cc[idx] - cb[idx]).mean(axis=1)
        elif metric == "macro_f1":
            yi = y[idx]
            diffs[start : start + m] = _macro_f1_batched(yi, pc[idx]) - _macro_f1_batched(
                yi, pb[idx]
            )
        else:
            raise ConfigError(f"metric {metric!r} is not supported; use 'accuracy' or 'macro_f1'")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    point = metric_value(metric, y, pc) - metric_value(metric, y, pb)
    return BootstrapCI(
        diff=float(point),
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (the report's accuracy ± CI for one build)."""
    from scipy.stats import norm

    if n <= 0:
        return (float("nan"), float("nan"))
    z = float(norm.ppf(0.5 + confidence / 2.0))
    phat = successes / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (float(centre - half), float(centre + half))


# ---- what would settle an inconclusive verdict ---------------------------------------------

POWER = 0.8  # the chance the interval clears the limit at the reported sample count


def _z(confidence: float, power: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0) + norm.ppf(power))


def paired_samples_needed(
    b: int, c: int, n: int, limit: float, confidence: float = 0.95, power: float = POWER
) -> int | None:
    """Labelled rows a paired non-inferiority test needs at the observed rates, or None.

    ``b`` rows only the baseline gets right, ``c`` only the candidate: the per-row difference
    d ∈ {−1, 0, 1} has mean (c − b)/n and variance (b + c)/n − mean², so the CI half-width is
    z·sqrt(var/n'). At n' = (z_conf + z_power)²·var / (mean + limit)² the interval clears −limit
    (on either side) with probability ``power`` if the observed rates are the true ones.
    None when the observed change sits exactly at the limit: more rows cannot settle it.

    Example: ``paired_samples_needed(3, 0, 239, 0.01)`` -> 14987 (about; 80% power).
    """
    mean = (c - b) / n
    var = (b + c) / n - mean * mean
    return samples_needed(mean, var, -limit, confidence, power)


def samples_needed(
    mean: float, var: float, bound: float, confidence: float = 0.95, power: float = POWER
) -> int | None:
    """Rows n at which a normal CI of a per-row mean ``mean`` (per-row variance ``var``)
    excludes ``bound`` with probability ``power``; None when ``mean`` equals ``bound``."""
    gap = abs(mean - bound)
    if gap < 1e-12:
        return None
    z = _z(confidence, power)
    return max(1, math.ceil(z * z * max(var, 0.0) / (gap * gap)))


def proportion_samples_needed(
    k: int, n: int, minimum: float, confidence: float = 0.95, power: float = POWER
) -> int | None:
    """Rows needed for a proportion observed at k/n to show it is above/below ``minimum``.

    Normal approximation at the observed rate; with no failures at all (k = n) the Wilson bound
    n/(n + z²) decides. None when the observed rate equals the minimum.
    """
    p = k / n
    if abs(p - minimum) < 1e-12:
        return None
    if p in (0.0, 1.0):
        z = _z(confidence, 0.5)
        if p == 1.0 and minimum < 1.0:
            return max(1, math.ceil(z * z * minimum / (1.0 - minimum)))
        if p == 0.0 and minimum > 0.0:
            return max(1, math.ceil(z * z * (1.0 - minimum) / minimum))
    return samples_needed(p, p * (1.0 - p), minimum, confidence, power)
