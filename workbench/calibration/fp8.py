"""FP8 (e4m3) calibration choices from the same statistics as the INT8 methods.

An FP8 e4m3 activation scale is ``amax / 448``. E4m3 keeps about the same relative
precision over its whole range, so clipping buys less than for INT8; the choices
are ``max``, ``percentile-P`` (as for INT8) and ``mse``: the candidate amax
minimising the expected squared error of rounding the histogram's bin centres onto
the e4m3 grid (saturating at +-448). Tables are ordinary ``CalibrationTable``s with
the method recorded as ``fp8-<choice>``.

Example::

    stats = collect_statistics("model.onnx", batches, open_runner=open_ort_runner)
    tables = fp8_tables_from_stats(stats, ["max", "mse"], sha256_file("model.onnx"))
    tables["fp8-mse"].save(run_dir / "calibration_fp8-mse.json")
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from workbench.calibration.methods import PERCENTILES, START_BIN, amax_percentile, parse_percentile
from workbench.calibration.stats import TensorStats
from workbench.calibration.table import CalibrationTable
from workbench.errors import CalibrationError, ConfigError

FP8_MAX = 448.0
FP8_METHODS = ("max", *PERCENTILES, "mse")
_CHUNK = 64  # mse candidates evaluated at once (bounded temporary memory)


@cache
def e4m3_grid() -> np.ndarray:
    """The 127 non-negative finite float8_e4m3fn values, ascending (0 ... 448)."""
    vals = []
    for e in range(16):
        for m in range(8):
            if e == 15 and m == 7:
                continue  # the NaN code
            vals.append(m / 8 * 2.0**-6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
    grid = np.array(vals, dtype=np.float64)
    grid.setflags(write=False)
    return grid


def round_to_e4m3(x: np.ndarray) -> np.ndarray:
    """Saturating round of ``x`` onto the e4m3 grid (nearest, ties to even mantissa; NaN kept)."""
    grid = e4m3_grid()
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), FP8_MAX)
    hi = np.clip(np.searchsorted(grid, a, side="left"), 1, grid.size - 1)
    lo = hi - 1
    d_lo, d_hi = a - grid[lo], grid[hi] - a
    # consecutive grid codes alternate mantissa parity: an even index is an even mantissa
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    out = np.copysign(np.where(pick_hi, grid[hi], grid[lo]), x)
    return np.where(np.isnan(x), np.nan, out)


def fp8_amax(stats: TensorStats, method: str) -> float:
    """The e4m3 calibration amax of one tensor (scale = amax / 448).

    Example::

        fp8_amax(stats["/encoder/embeddings/LayerNorm/LayerNormalization_output_0"], "mse")
    """
    if method == "max":
        return float(stats.absmax)
    if method in PERCENTILES:
        return amax_percentile(stats.hist, stats.bin_width, stats.absmax, parse_percentile(method))
    if method == "mse":
        return amax_mse_fp8(stats.hist, stats.bin_width, stats.absmax)
    raise ConfigError(f"unknown FP8 calibration method {method!r}; choose from {FP8_METHODS}")


def fp8_mse(values: np.ndarray, weights: np.ndarray, amaxes: np.ndarray) -> np.ndarray:
    """Weighted squared error of e4m3 fake-quantizing ``values`` for each candidate amax."""
    scale = (np.asarray(amaxes, dtype=np.float64) / FP8_MAX)[:, None]
    q = round_to_e4m3(values[None, :] / scale) * scale
    return ((values[None, :] - q) ** 2 * weights[None, :]).sum(axis=1)


def amax_mse_fp8(
    hist: np.ndarray, bin_width: float, absmax: float, start_bin: int = START_BIN
) -> float:
    """Candidate amax (a bin edge from ``start_bin`` up, or the abs-max) of least e4m3 MSE."""
    if absmax <= 0 or hist.sum() == 0:
        return 0.0
    stop = min(hist.size, int(absmax // bin_width) + 1)
    counts = hist[:stop].astype(np.float64)
    keep = counts > 0
    centres = ((np.arange(stop) + 0.5) * bin_width)[keep]
    counts = counts[keep]
    edges = np.arange(min(start_bin, stop), stop + 1) * bin_width
    cands = np.unique(np.minimum(np.append(edges, absmax), absmax))
    cands = cands[cands > 0]
    errors = np.concatenate(
        [fp8_mse(centres, counts, cands[s : s + _CHUNK]) for s in range(0, cands.size, _CHUNK)]
    )
    best = cands.size - 1 - int(np.argmin(errors[::-1]))  # ties: the largest range
    return float(cands[best])


def fp8_tables_from_stats(
    stats: dict[str, TensorStats],
    methods: Sequence[str],
    model_sha256: str,
    calibration_set_sha256: str = "",
) -> dict[str, CalibrationTable]:
    """One FP8 table per method (keys ``fp8-<method>``) from statistics already collected."""
    if not stats:
        raise CalibrationError("no statistics to compute FP8 ranges from")
    unknown = [m for m in methods if m not in FP8_METHODS]
    if unknown or not methods:
        raise ConfigError(f"FP8 calibration methods {unknown or '[]'}; choose from {FP8_METHODS}")
    n_samples = max(s.n_samples for s in stats.values())
    num_bins = next(iter(stats.values())).num_bins
    return {
        f"fp8-{m}": CalibrationTable(
            amax={name: fp8_amax(s, m) for name, s in stats.items()},
            method=f"fp8-{m}",
            n_samples=n_samples,
            model_sha256=model_sha256,
            calibration_set_sha256=calibration_set_sha256,
            num_bins=num_bins,
        )
        for m in methods
    }
