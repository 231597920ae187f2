"""FP8 (e4m3) calibration: the grid and rounding against ml_dtypes and torch, the three choices."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.calibration.fp8 import (
    FP8_MAX,
    FP8_METHODS,
    amax_mse_fp8,
    e4m3_grid,
    fp8_amax,
    fp8_mse,
    fp8_tables_from_stats,
    round_to_e4m3,
)
from workbench.calibration.methods import compute_amax
from workbench.calibration.stats import TensorStats
from workbench.errors import CalibrationError, ConfigError


def _values(seed: int = 0, n: int = 50_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) * np.exp(rng.uniform(-14, 7, n))


def test_grid_is_every_finite_e4m3fn_value():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="oracle needs ml_dtypes")
    codes = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    want = np.unique(np.abs(codes[np.isfinite(codes)]))
    np.testing.assert_array_equal(e4m3_grid(), want)
    assert e4m3_grid()[-1] == FP8_MAX


def test_rounding_matches_ml_dtypes_and_torch_ties_and_saturation():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="oracle needs ml_dtypes")
    g = e4m3_grid()
    mids = (g[:-1] + g[1:]) / 2  # exact ties: must go to the even mantissa
    x = np.concatenate([_values(), mids, -mids, [0.0, -0.0, 448.0, 460.0, -1e9, 1e-12]])
    got = round_to_e4m3(x)
    want = np.clip(x, -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
    np.testing.assert_array_equal(got, want)
    torch = pytest.importorskip("torch", reason="second oracle needs torch")
    xf = np.clip(x, -FP8_MAX, FP8_MAX).astype(np.float32)  # exactly representable ties in fp32
    t = torch.from_numpy(xf).to(torch.float8_e4m3fn).double().numpy()
    np.testing.assert_array_equal(round_to_e4m3(xf), t)
    assert np.isnan(round_to_e4m3(np.array([np.nan])))[0]


def _stats(values: np.ndarray) -> TensorStats:
    s = TensorStats("t")
    s.update(values.astype(np.float32), n_samples=1)
    return s


def test_max_and_percentile_are_the_int8_methods_values():
    s = _stats(_values(1))
    assert fp8_amax(s, "max") == s.absmax
    for m in ("percentile-99.9", "percentile-99.99"):
        assert fp8_amax(s, m) == compute_amax(s, m)


@pytest.mark.parametrize("kind", ["outliers", "laplace", "uniform"])
def test_mse_picks_the_best_candidate_on_the_raw_values(kind):
    """Brute force over a dense candidate sweep on the raw samples (not the histogram)."""
    rng = np.random.default_rng(2)
    x = {
        "outliers": np.concatenate([rng.standard_normal(20_000), [400.0, -380.0]]),
        "laplace": rng.laplace(size=20_000),
        "uniform": rng.uniform(-3, 3, 20_000),
    }[kind]
    s = _stats(x)
    chosen = fp8_amax(s, "mse")
    cands = np.linspace(s.absmax / 16, s.absmax, 400)
    raw = fp8_mse(x, np.ones_like(x), np.append(cands, chosen))
    assert raw[-1] <= 1.05 * raw[:-1].min(), (chosen, cands[np.argmin(raw[:-1])])


def test_mse_keeps_the_range_without_outliers():
    """E4m3 precision is relative: with no outliers, clipping gains nothing."""
    x = np.random.default_rng(3).uniform(-1, 1, 20_000)
    s = _stats(x)
    assert fp8_amax(s, "mse") >= 0.9 * s.absmax


def test_mse_edge_cases():
    assert amax_mse_fp8(np.zeros(2048, dtype=np.int64), 1.0, 0.0) == 0.0
    assert fp8_amax(_stats(np.full(100, 3.0)), "mse") == pytest.approx(3.0)


def test_tables_and_errors():
    stats = {"a": _stats(_values(4)), "b": _stats(_values(5))}
    tables = fp8_tables_from_stats(stats, FP8_METHODS, "sha", "set")
    assert set(tables) == {f"fp8-{m}" for m in FP8_METHODS}
    t = tables["fp8-max"]
    assert t.method == "fp8-max" and t.amax["a"] == stats["a"].absmax and t.n_samples == 1
    with pytest.raises(ConfigError, match="choose from"):
        fp8_tables_from_stats(stats, ["entropy"], "sha")
    with pytest.raises(CalibrationError):
        fp8_tables_from_stats({}, ["max"], "sha")
    with pytest.raises(ConfigError):
        fp8_amax(stats["a"], "kl")
