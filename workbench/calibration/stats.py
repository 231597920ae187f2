"""Streamed per-tensor activation statistics in bounded memory.

One FP32 ONNX Runtime session with the tensors to calibrate added as graph
outputs runs over the calibration set batch by batch; each tensor's values at
real (non-padded) token positions update a ``TensorStats``: min, max, abs-max and
a ``num_bins`` histogram of |x| over ``[0, R)``. ``R`` is a power of two strictly
above the abs-max seen so far; when a larger value arrives ``R`` doubles and pairs
of bins merge, which is exact, so the histogram does not depend on how the data
was batched (one batch of 64 gives the same counts as 64 batches of 1) and memory
never grows with the number of samples.

Example::

    stats = collect_statistics("model.onnx", calibset.batches(tokenizer, 16),
                               open_runner=open_ort_runner)
    amax = {name: compute_amax(s, "entropy") for name, s in stats.items()}
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.calibration.graph import QUANTIZED_OPS, load_onnx, quantizable_tensors
from workbench.calibration.tap import ActivationTap, OpenRunner, _Chunk
from workbench.errors import CalibrationError

__all__ = [
    "QUANTIZED_OPS",
    "ActivationTap",
    "TensorStats",
    "channel_absmax",
    "collect_statistics",
    "load_onnx",
    "quantizable_tensors",
]

log = logging.getLogger(__name__)

MIN_RANGE = 2.0**-30  # histogram range floor; ranges only double from here


@dataclass
class TensorStats:
    """Running statistics of one tensor: min/max/abs-max and a histogram of |x|."""

    name: str
    num_bins: int = 2048
    count: int = 0  # values seen (real token positions only)
    n_samples: int = 0  # sequences seen
    min: float = math.inf
    max: float = -math.inf
    hist_range: float = MIN_RANGE  # histogram covers [0, hist_range); a power of two
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.num_bins < 2 or self.num_bins & (self.num_bins - 1):
            raise CalibrationError(f"num_bins must be a power of two >= 2, got {self.num_bins}")
        if self.hist.size == 0:
            self.hist = np.zeros(self.num_bins, dtype=np.int64)

    @property
    def absmax(self) -> float:
        """Largest |x| seen (0.0 before any data)."""
        return max(-self.min, self.max, 0.0) if self.count else 0.0

    @property
    def bin_width(self) -> float:
        return self.hist_range / self.num_bins

    def edges(self) -> np.ndarray:
        """The ``num_bins + 1`` histogram bin edges."""
        return np.arange(self.num_bins + 1, dtype=np.float64) * self.bin_width

    def update(self, values: np.ndarray, n_samples: int = 0) -> None:
        """Add finite float values (any shape); non-finite ones raise CalibrationError."""
        flat = np.array(values, dtype=np.float32).ravel()  # a copy: _add works in place
        if flat.size == 0:
            self.n_samples += n_samples
            return
        vmin, vmax = float(flat.min()), float(flat.max())
        if not (math.isfinite(vmin) and math.isfinite(vmax)):
            raise CalibrationError(f"tensor {self.name!r} has NaN/Inf values; check the model")
        self._add(flat, vmin, vmax, n_samples)

    def _add(self, flat: np.ndarray, vmin: float, vmax: float, n_samples: int) -> None:
        """Fast path: ``flat`` is 1-D float32, finite, with known min/max (may be modified)."""
        self.grow_to(max(-vmin, vmax))
        n = self.num_bins
        np.abs(flat, out=flat)
        flat *= np.float32(n / self.hist_range)  # a power of two: exact
        idx = _scratch(flat.size)  # reused: no page faults, no allocator fragmentation
        np.copyto(idx, flat, casting="unsafe")  # truncation = floor for |x| >= 0
        self.hist += np.bincount(idx, minlength=n)[:n]
        self.min = min(self.min, vmin)
        self.max = max(self.max, vmax)
        self.count += int(flat.size)
        self.n_samples += n_samples

    def grow_to(self, amax: float) -> None:
        """Double the range until ``amax < hist_range``, merging bins exactly."""
        if amax < self.hist_range:
            return
        _, exp = math.frexp(amax)  # amax = m * 2**exp, 0.5 <= m < 1, so amax < 2**exp
        new_range = math.ldexp(1.0, exp)
        self.hist = _coarsen(self.hist, self.hist_range, new_range)
        self.hist_range = new_range

    def merge(self, other: TensorStats) -> None:
        """Fold another accumulator of the same tensor into this one (exact)."""
        if other.num_bins != self.num_bins:
            raise CalibrationError(f"cannot merge {self.name!r}: bin counts differ")
        target = max(self.hist_range, other.hist_range)
        self.hist = _coarsen(self.hist, self.hist_range, target)
        self.hist += _coarsen(other.hist, other.hist_range, target)
        self.hist_range = target
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.n_samples += other.n_samples


_SCRATCH = threading.local()


def _scratch(size: int) -> np.ndarray:
    """A per-thread index buffer of at least ``size`` (grown, never shrunk)."""
    buf = getattr(_SCRATCH, "idx", None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1 << 16), dtype=np.intp)
        _SCRATCH.idx = buf
    return buf[:size]


def _coarsen(hist: np.ndarray, from_range: float, to_range: float) -> np.ndarray:
    """Re-bin a histogram over [0, from_range) onto [0, to_range) (ranges: powers of two)."""
    factor = round(to_range / from_range)
    n = hist.size
    if factor <= 1:
        return hist.copy()
    out = np.zeros(n, dtype=np.int64)
    if factor >= n:
        out[0] = hist.sum()
    else:
        out[: n // factor] = hist.reshape(n // factor, factor).sum(axis=1)
    return out


def collect_statistics(
    onnx_path: str | Path,
    batches: Iterable[dict[str, np.ndarray]],
    tensor_names: list[str] | None = None,
    num_bins: int = 2048,
    *,
    open_runner: OpenRunner,
    max_output_mb: float = 64.0,
    max_tokens_per_run: int | None = None,
    intra_op_threads: int = 0,
) -> dict[str, TensorStats]:
    """One streamed pass over ``batches`` -> ``TensorStats`` per tensor (padding masked out).

    ``tensor_names`` defaults to ``quantizable_tensors(onnx_path)``. Batches are split into
    runs whose requested outputs take at most ``max_output_mb``; the statistics of one run
    are folded in on a second thread while ONNX Runtime computes the next, so at most two
    runs' outputs are alive: memory does not grow with the number of samples. ``open_runner``
    opens the FP32 runner (``backends.onnxruntime.runner.open_ort_runner``).

    Example::

        stats = collect_statistics(info.onnx_path, (tok.encode(t) for t in text_batches),
                                   open_runner=open_ort_runner)
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    n_batches = 0
    tap = ActivationTap(
        onnx_path,
        tensor_names,
        max_tokens_per_run,
        intra_op_threads,
        max_output_mb,
        open_runner=open_runner,
    )
    stats = {n: TensorStats(n, num_bins) for n in tap.tensor_names}

    def fold(chunk: _Chunk) -> None:
        for act in tap.activations(chunk):
            stats[act.name]._add(act.values, act.vmin, act.vmax, act.n_samples)

    with tap, ThreadPoolExecutor(max_workers=1, thread_name_prefix="wb-stats") as pool:
        pending: Future[None] | None = None
        for feed in batches:
            n_batches += 1
            for chunk in tap.chunks(feed):
                if pending is not None:
                    pending.result()  # re-raises a NaN/Inf error from the worker
                pending = pool.submit(fold, chunk)
        if pending is not None:
            pending.result()
        n_samples = tap.samples_seen
    if n_batches == 0 or n_samples == 0:
        raise CalibrationError(
            "the calibration set is empty (no batches); build one with `workbench calibset`"
        )
    log.info("collected statistics of %d tensors over %d samples", len(stats), n_samples)
    return stats


def channel_absmax(
    fp32_onnx: str | Path,
    tensor_names: list[str],
    feeds: Iterable[dict[str, np.ndarray]],
    *,
    open_runner: OpenRunner,
) -> dict[str, np.ndarray]:
    """Per-channel (last axis) abs-max of each tensor at real token positions, one pass.

    What SmoothQuant needs (``calibration/smoothquant.py``): the per-tensor statistics above
    fold every channel into one histogram.

    Example::

        amax = channel_absmax("model.onnx", smoothing_sites("model.onnx"), feeds,
                              open_runner=open_ort_runner)
    """
    out: dict[str, np.ndarray] = {}
    with ActivationTap(fp32_onnx, list(tensor_names), open_runner=open_runner) as tap:
        for feed in feeds:
            for chunk in tap.chunks(feed):
                for name, rows in tap.token_rows(chunk):
                    if rows.size == 0:
                        continue
                    if not np.isfinite(rows).all():
                        raise CalibrationError(
                            f"tensor {name!r} has NaN/Inf values; check the model"
                        )
                    m = np.abs(rows).max(axis=0).astype(np.float32)
                    out[name] = np.maximum(out[name], m) if name in out else m
        if tap.samples_seen == 0:
            raise CalibrationError("no calibration batches given; build a calibration set first")
    return out
