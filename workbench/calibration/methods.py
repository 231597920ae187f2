"""Threshold methods: small pure functions from a |x| histogram to a symmetric amax.

All work on the histogram of ``TensorStats`` (bins of width ``w`` over ``[0, R)``),
so one statistics pass serves every method. Ranges are symmetric ``[-amax, amax]``
(TensorRT requires symmetric INT8), and no method returns more than the abs-max seen.

* ``max``: the abs-max itself (exact, not from the histogram).
* ``percentile-P``: the |x| value below which P % of the values lie, interpolated
  linearly inside the bin where the cumulative count crosses P %.
* ``entropy``: TensorRT's EntropyCalibration2 search (Migacz, GTC 2017; the same
  procedure as NVIDIA's pytorch-quantization ``_compute_amax_entropy``): for every
  candidate of ``i`` bins (128 up to the bin holding the abs-max), fold the
  outliers into the last kept bin (reference P), merge the ``i`` bins into 128
  levels and spread each level evenly over its non-empty source bins (candidate Q),
  keep the ``i`` with the smallest KL(P || Q) (ties: the largest ``i``). Bin 0 is
  set to bin 1's count first, as TensorRT does, so exact zeros do not dominate.
* ``mse``: the candidate amax minimising the expected squared error of fake-quantizing
  the histogram's bin centres to 127 levels.

Example::

    amax = compute_amax(stats, "percentile-99.99")
"""

from __future__ import annotations

import math

import numpy as np

from workbench.calibration.stats import TensorStats
from workbench.errors import ConfigError

METHODS = ("max", "percentile-99.9", "percentile-99.99", "percentile-99.999", "entropy", "mse")
PERCENTILES = ("percentile-99.9", "percentile-99.99", "percentile-99.999")
NUM_QUANTIZED_BINS = 128  # int8 symmetric: 127 levels + sign; TensorRT merges into 128
START_BIN = 128
_CHUNK = 128  # mse candidates evaluated at once (bounded temporary memory: ~2 MB per array)


def compute_amax(stats: TensorStats, method: str) -> float:
    """The symmetric range ``amax`` of one tensor under ``method`` (one of ``METHODS``).

    Example::

        compute_amax(stats["/encoder/.../LayerNorm_output_0"], "entropy")
    """
    if method == "max":
        return float(stats.absmax)
    if method.startswith("percentile-"):
        return amax_percentile(stats.hist, stats.bin_width, stats.absmax, parse_percentile(method))
    if method == "entropy":
        return amax_entropy(stats.hist, stats.bin_width, stats.absmax)
    if method == "mse":
        return amax_mse(stats.hist, stats.bin_width, stats.absmax)
    raise ConfigError(unknown_method_message(method))


def unknown_method_message(method: str) -> str:
    import difflib

    close = difflib.get_close_matches(method, METHODS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown calibration method {method!r}{hint}; choose from {', '.join(METHODS)}"


def parse_percentile(method: str) -> float:
    try:
        p = float(method.split("-", 1)[1])
    except (IndexError, ValueError) as exc:
        raise ConfigError(unknown_method_message(method)) from exc
    if not 0.0 < p <= 100.0:
        raise ConfigError(f"percentile in {method!r} must lie in (0, 100]")
    return p


def _used_bins(hist: np.ndarray, bin_width: float, absmax: float) -> int:
    """Bins up to and including the one holding the abs-max."""
    return min(hist.size, int(absmax // bin_width) + 1)


def amax_percentile(hist: np.ndarray, bin_width: float, absmax: float, percentile: float) -> float:
    """|x| below which ``percentile`` % of the counted values lie (linear within the bin)."""
    total = float(hist.sum())
    if total <= 0 or absmax <= 0:
        return 0.0
    cum = np.cumsum(hist, dtype=np.float64)
    target = percentile / 100.0 * total
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, hist.size - 1)
    before = float(cum[b - 1]) if b > 0 else 0.0
    frac = (target - before) / float(hist[b]) if hist[b] > 0 else 1.0
    return float(min((b + min(max(frac, 0.0), 1.0)) * bin_width, absmax))


def amax_entropy(
    hist: np.ndarray,
    bin_width: float,
    absmax: float,
    num_quantized_bins: int = NUM_QUANTIZED_BINS,
    start_bin: int = START_BIN,
) -> float:
    """TensorRT EntropyCalibration2's KL-divergence threshold (see module docstring)."""
    if absmax <= 0 or hist.sum() == 0:
        return 0.0
    stop = _used_bins(hist, bin_width, absmax)
    if stop <= num_quantized_bins:
        return float(absmax)  # every bin gets its own level: nothing to gain by clipping
    bins = hist[:stop].astype(np.float64)
    bins[0] = bins[1]
    candidates = np.arange(max(start_bin, num_quantized_bins), stop + 1)
    divergences = _kl_divergences(bins, candidates, num_quantized_bins)
    best = candidates.size - 1 - int(np.argmin(divergences[::-1]))  # last minimum, like TensorRT
    return float(min(candidates[best] * bin_width, absmax))


def _kl_divergences(bins: np.ndarray, cands: np.ndarray, nq: int) -> np.ndarray:
    """KL(P || Q) for every candidate bin count in ``cands``, from prefix sums.

    Level ``j`` of candidate ``i`` holds source bins ``[ceil(j*i/nq), ceil((j+1)*i/nq))``
    (what ``floor(k * nq / i) == j`` selects), so its sum, non-empty count and sum of
    ``b log b`` are prefix-sum differences: O(nq) per candidate instead of O(bins).
    """
    total = bins.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        blogb = np.where(bins > 0, bins * np.log(bins), 0.0)
    s_b = np.concatenate([[0.0], np.cumsum(bins)])
    s_nz = np.concatenate([[0.0], np.cumsum(bins > 0)])
    s_bl = np.concatenate([[0.0], np.cumsum(blogb)])
    i = cands[:, None]
    j = np.arange(nq + 1)[None, :]
    edges = (j * i + nq - 1) // nq  # ceil(j * i / nq), shape (C, nq + 1)
    lo, hi = edges[:, :-1], edges[:, 1:]
    b_sum = s_b[hi] - s_b[lo]
    n_nz = s_nz[hi] - s_nz[lo]
    bl_sum = s_bl[hi] - s_bl[lo]
    q_tot = s_b[cands]  # sum of Q before normalising (= kept mass, outliers excluded)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_avg = np.where(b_sum > 0, np.log(b_sum / np.maximum(n_nz, 1.0)), 0.0)
        shift = math.log(total) - np.log(q_tot)[:, None]
        main = np.where(b_sum > 0, bl_sum - b_sum * (shift + log_avg), 0.0).sum(axis=1)
        # the last kept bin also carries the outliers: replace its term
        last = bins[cands - 1]
        outliers = total - s_b[cands]
        p_last = last + outliers
        log_avg_last = log_avg[:, -1]
        sh = shift[:, 0]
        old = np.where(last > 0, blogb[cands - 1] - last * (sh + log_avg_last), 0.0)
        new = np.where(last > 0, p_last * (np.log(p_last) - sh - log_avg_last), 0.0)
        kl = (main - old + new) / total
    return np.where((last == 0) & (outliers > 0), np.inf, kl)


def amax_mse(
    hist: np.ndarray, bin_width: float, absmax: float, start_bin: int = START_BIN
) -> float:
    """Candidate amax (a bin edge from ``start_bin`` up) minimising expected fake-quant MSE."""
    if absmax <= 0 or hist.sum() == 0:
        return 0.0
    stop = _used_bins(hist, bin_width, absmax)
    counts = hist[:stop].astype(np.float64)
    centres = (np.arange(stop) + 0.5) * bin_width
    edges = np.arange(min(start_bin, stop), stop + 1) * bin_width
    cands = np.unique(np.minimum(np.append(edges, absmax), absmax))
    errors = np.concatenate(
        [_quant_mse(centres, counts, cands[s : s + _CHUNK]) for s in range(0, cands.size, _CHUNK)]
    )
    return float(cands[int(np.argmin(errors))])


def _quant_mse(values: np.ndarray, weights: np.ndarray, amaxes: np.ndarray) -> np.ndarray:
    scale = (amaxes / 127.0)[:, None]
    q = np.clip(np.round(values[None, :] / scale), -127, 127) * scale
    return ((values[None, :] - q) ** 2 * weights[None, :]).sum(axis=1)


def fake_quant(x: np.ndarray, amax: float) -> np.ndarray:
    """Symmetric int8 quantize-dequantize of ``x`` with range ``amax`` (as Q/DQ nodes do)."""
    if amax <= 0:
        return np.zeros_like(x)
    scale = np.float32(amax / 127.0)
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(x.dtype, copy=False)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when there is no noise)."""
    if noise_power <= 0:
        return math.inf
    if signal_power <= 0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)
