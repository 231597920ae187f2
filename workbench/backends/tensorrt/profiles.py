"""Optimization profiles (min/opt/max input shapes) derived from token-length distributions.

Pure functions, no TensorRT: the builder turns a ``ShapeProfile`` into
``IOptimizationProfile.set_shape`` calls. BERT-family inputs share one (batch, sequence)
shape, so one profile covers ``input_ids``, ``attention_mask`` and ``token_type_ids``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import ConfigError, DataError

Shape2 = tuple[int, int]


@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max (batch, sequence) shapes for every 2-D token input."""

    min: Shape2
    opt: Shape2
    max: Shape2

    def __post_init__(self) -> None:
        for axis, label in ((0, "batch"), (1, "sequence")):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if not (1 <= lo <= mid <= hi):
                raise ConfigError(
                    f"profile {label} sizes must satisfy 1 <= min <= opt <= max, got "
                    f"{lo}/{mid}/{hi}; fix the batch sizes or max_length"
                )

    def contains(self, shape: Sequence[int]) -> bool:
        """Whether a (batch, sequence) shape lies inside this profile."""
        b, s = int(shape[0]), int(shape[1])
        return self.min[0] <= b <= self.max[0] and self.min[1] <= s <= self.max[1]

    def as_dict(self) -> dict[str, list[int]]:
        """JSON-ready form (for cache keys and records)."""
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_suggestion(cls, suggestion: dict[str, Any]) -> ShapeProfile:
        """From ``workbench.data.shapes.suggest_profile`` (a calibration manifest's suggestion).

        Note that suggestion caps ``max`` at the longest length seen, not ``max_length``:
        longer texts at evaluation time would then fall outside the engine's profile.
        """
        shapes = suggestion["shapes"]
        first = next(iter(shapes.values()))
        as2 = lambda v: (int(v[0]), int(v[1]))  # noqa: E731
        return cls(as2(first["min"]), as2(first["opt"]), as2(first["max"]))

    @classmethod
    def fixed(cls, batch: int, seq: int) -> ShapeProfile:
        """min = opt = max: the shape the implicit-INT8 calibrator feeds."""
        return cls((batch, seq), (batch, seq), (batch, seq))


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return int(math.ceil(value / multiple) * multiple)


def _check_lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(lengths, dtype=np.int64)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(
            "token lengths must be a non-empty 1-D sequence; is the calibration set empty?"
        )
    if int(arr.min()) < 1:
        raise DataError(f"token lengths must be >= 1, got min {int(arr.min())}")
    return arr


def typical_padded_length(lengths: Sequence[int] | np.ndarray, batch: int) -> int:
    """Sequence length a batch of ``batch`` texts is padded to, typically.

    Batches pad to their longest text; the longest of ``batch`` draws sits near the
    ``batch/(batch+1)`` quantile of the length distribution.
    """
    arr = _check_lengths(lengths)
    q = batch / (batch + 1.0)
    return math.ceil(float(np.quantile(arr, q, method="higher")))


def derive_profile(
    lengths: Sequence[int] | np.ndarray,
    *,
    max_length: int,
    opt_batch: int,
    max_batch: int,
    min_batch: int = 1,
    multiple: int = 8,
) -> ShapeProfile:
    """A profile for texts with these token lengths (with special tokens, untruncated).

    * min: (min_batch, 1) — shorter inputs cost nothing to allow.
    * opt: (opt_batch, typical padded length of an opt_batch batch), rounded up to
      ``multiple`` (tensor-core friendly) and capped at ``max_length``.
    * max: (max_batch, max_length) — the tokenizer truncates longer texts, so no feed exceeds it.

    Example::

        prof = derive_profile(tok.lengths(texts), max_length=128, opt_batch=32, max_batch=64)
    """
    arr = _check_lengths(lengths)
    if max_length < 1:
        raise ConfigError(f"max_length must be >= 1, got {max_length}")
    if multiple < 1:
        raise ConfigError(f"multiple must be >= 1, got {multiple}")
    opt_seq = min(max_length, round_up(typical_padded_length(arr, opt_batch), multiple))
    return ShapeProfile(
        min=(min_batch, 1),
        opt=(opt_batch, max(1, opt_seq)),
        max=(max_batch, max_length),
    )


def calibration_shape(
    lengths: Sequence[int] | np.ndarray, *, max_length: int, batch: int, multiple: int = 8
) -> Shape2:
    """The fixed (batch, seq) the implicit calibrator feeds: no calibration text is truncated."""
    arr = _check_lengths(lengths)
    seq = min(max_length, round_up(int(arr.max()), multiple))
    return (batch, seq)


def length_summary(lengths: Sequence[int] | np.ndarray, max_length: int) -> dict[str, float]:
    """Percentiles and truncation share of a length distribution (for logs and records)."""
    arr = _check_lengths(lengths)
    p50, p90, p99 = (float(np.percentile(arr, q)) for q in (50, 90, 99))
    return {
        "n": float(arr.size),
        "min": float(arr.min()),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": float(arr.max()),
        "truncated_share": float(np.mean(arr > max_length)),
    }
