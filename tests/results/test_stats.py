"""Paired statistics against independent oracles: scipy, a hand computation, sklearn, loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest
from sklearn.metrics import f1_score

from workbench.results import stats


def _paired(b: int, c: int, same_right: int = 50, same_wrong: int = 10):
    base = np.array([1] * b + [0] * c + [1] * same_right + [0] * same_wrong, dtype=bool)
    cand = np.array([0] * b + [1] * c + [1] * same_right + [0] * same_wrong, dtype=bool)
    return base, cand


def statsmodels_exact_mcnemar(b: int, c: int) -> float:
    """statsmodels.stats.contingency_tables.mcnemar(exact=True): min(1, 2 * Binom.cdf(min))."""
    return min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5))


@pytest.mark.parametrize(("b", "c"), [(2, 10), (10, 2), (0, 7), (15, 15), (31, 12), (1, 0)])
def test_mcnemar_matches_scipy_and_statsmodels_formula(b, c):
    r = stats.mcnemar_exact(*_paired(b, c))
    assert (r.b, r.c) == (b, c)
    assert r.p_value == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    assert r.p_value == pytest.approx(statsmodels_exact_mcnemar(b, c), rel=1e-9)


def test_mcnemar_hand_computation():
    # b=2, c=10: n=12, P(X<=2) = (C(12,0)+C(12,1)+C(12,2)) / 2^12 = 79/4096; two-sided doubles it
    r = stats.mcnemar_exact(*_paired(2, 10))
    assert r.p_value == pytest.approx(158 / 4096, rel=1e-12)
    assert math.comb(12, 0) + math.comb(12, 1) + math.comb(12, 2) == 79


def test_mcnemar_no_discordant_pairs_is_one():
    assert stats.mcnemar_exact(*_paired(0, 0)).p_value == 1.0


def test_macro_f1_matches_sklearn_including_absent_classes():
    rng = np.random.default_rng(1)
    for k in (2, 3, 5):
        y = rng.integers(0, k, 300)
        p = np.where(rng.random(300) < 0.7, y, rng.integers(0, k, 300))
        assert stats.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    y = np.array([0, 0, 1, 1, 0])  # class 2 only predicted, never true
    p = np.array([0, 2, 1, 0, 0])
    assert stats.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)


def _naive_bootstrap(y, pb, pc, metric, resamples, confidence, seed):
    """Loop oracle: the same seeded index draws, one resample at a time."""
    rng = np.random.default_rng(seed)
    n = len(y)
    score = (
        (lambda a, b: np.mean(a == b))
        if metric == "accuracy"
        else (lambda a, b: f1_score(a, b, average="macro"))
    )
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, n, size=n)
        diffs.append(score(y[i], pc[i]) - score(y[i], pb[i]))
    a = (1 - confidence) / 2
    return np.quantile(diffs, [a, 1 - a])


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_bootstrap_matches_loop_oracle(metric):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    pb = np.where(rng.random(120) < 0.8, y, rng.integers(0, 3, 120))
    pc = np.where(rng.random(120) < 0.9, pb, rng.integers(0, 3, 120))
    resamples = 2000 if metric == "accuracy" else 300
    ci = stats.paired_bootstrap(y, pb, pc, metric, resamples, 0.9, seed=7)
    lo, hi = _naive_bootstrap(y, pb, pc, metric, resamples, 0.9, seed=7)
    assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=1e-12)
    assert ci.low <= ci.diff <= ci.high


def test_bootstrap_is_seeded_and_near_normal_approximation():
    y = np.ones(2000, dtype=int)
    pb = y.copy()
    pc = y.copy()
    pb[:100] = 0  # baseline wrong on 100
    pc[50:200] = 0  # candidate wrong on 150 -> diff -2.5 pts
    a = stats.paired_bootstrap(y, pb, pc, "accuracy", 2000, 0.95, seed=1)
    b = stats.paired_bootstrap(y, pb, pc, "accuracy", 2000, 0.95, seed=1)
    c = stats.paired_bootstrap(y, pb, pc, "accuracy", 2000, 0.95, seed=2)
    assert a == b and a != c
    assert a.diff == pytest.approx(-0.025)
    d = (pc == y).astype(float) - (pb == y).astype(float)
    half = 1.96 * d.std() / np.sqrt(len(d))
    assert a.low == pytest.approx(a.diff - half, abs=0.002)
    assert a.high == pytest.approx(a.diff + half, abs=0.002)


def test_wilson_interval_known_value():
    lo, hi = stats.wilson_interval(8, 10, 0.95)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
