"""Token-length buckets, length-bucketed batch plans and TensorRT profile suggestions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from workbench.errors import DataError

# Upper edges (inclusive) of the token-length buckets; lengths above the last edge share one bucket.
LENGTH_EDGES: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def length_buckets(lengths: np.ndarray, max_length: int) -> np.ndarray:
    """Bucket index of each token length (bucket ``i`` holds ``(edge[i-1], edge[i]]``).

    Lengths are clipped to ``max_length`` first: everything truncated lands in one bucket.
    Example: ``length_buckets(np.array([5, 20, 300]), 128) -> [0, 1, 6]``.
    """
    edges = np.array([e for e in LENGTH_EDGES if e < max_length] + [max_length])
    clipped = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    return np.searchsorted(edges, clipped, side="left").astype(np.int64)


def bucket_label(bucket: int, max_length: int) -> str:
    """Human-readable range of a bucket index, e.g. ``"17-24"``."""
    edges = [0] + [e for e in LENGTH_EDGES if e < max_length] + [max_length]
    return f"{edges[bucket] + 1}-{edges[bucket + 1]}"


def batch_plan(lengths: np.ndarray, max_length: int, batch_size: int) -> list[np.ndarray]:
    """Index batches grouped by length bucket, sorted by length inside a bucket.

    Every index appears exactly once; each batch is a fresh array. Padding a batch to its
    longest member therefore never pads past its bucket's upper edge.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    lengths = np.asarray(lengths, dtype=np.int64)
    buckets = length_buckets(lengths, max_length)
    order = np.lexsort((np.arange(len(lengths)), lengths, buckets))
    plan: list[np.ndarray] = []
    for b in np.unique(buckets):
        members = order[buckets[order] == b]
        for start in range(0, len(members), batch_size):
            plan.append(members[start : start + batch_size].copy())
    return plan


def length_histogram(lengths: np.ndarray, max_length: int) -> dict[str, int]:
    """Counts per length bucket (``"17-24": 131``), in bucket order, empty buckets included."""
    buckets = length_buckets(lengths, max_length)
    n_buckets = len([e for e in LENGTH_EDGES if e < max_length]) + 1
    counts = np.bincount(buckets, minlength=n_buckets)
    return {bucket_label(i, max_length): int(c) for i, c in enumerate(counts)}


def length_stats(lengths: np.ndarray, max_length: int) -> dict[str, float]:
    """Mean, p50/p90/p99, min, max and the share longer than ``max_length`` (truncated)."""
    x = np.asarray(lengths, dtype=np.float64)
    if x.size == 0:
        raise DataError("no token lengths to summarise (empty set)")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "min": float(x.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(x.max()),
        "truncated_share": float((x > max_length).mean()),
    }


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def suggest_profile(
    lengths: np.ndarray,
    max_length: int,
    batch_sizes: tuple[int, int, int] = (1, 8, 32),
    multiple: int = 8,
) -> dict[str, Any]:
    """TensorRT optimisation-profile suggestion (min/opt/max) from observed token lengths.

    ``min`` is the shortest length seen, ``opt`` the median rounded up to ``multiple``
    (the shape TensorRT tunes kernels for), ``max`` the longest seen rounded up, capped
    at ``max_length`` (longer inputs are truncated anyway). Example::

        suggest_profile(cal.lengths, 128)["shapes"]["input_ids"]
        # {"min": [1, 5], "opt": [8, 32], "max": [32, 64]}
    """
    x = np.asarray(lengths, dtype=np.int64)
    if x.size == 0:
        raise DataError("cannot suggest a profile from zero lengths; the set is empty")
    if max_length < 1:
        raise DataError(f"max_length must be positive, got {max_length}")
    clipped = np.minimum(x, max_length)
    seq_min = int(max(1, clipped.min()))
    seq_max = int(min(max_length, _round_up(float(clipped.max()), multiple)))
    seq_opt = int(min(seq_max, max(seq_min, _round_up(float(np.median(clipped)), multiple))))
    b_min, b_opt, b_max = batch_sizes
    shape = {"min": [b_min, seq_min], "opt": [b_opt, seq_opt], "max": [b_max, seq_max]}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {
        "seq_len": {"min": seq_min, "opt": seq_opt, "max": seq_max},
        "shapes": {
            name: {k: list(v) for k, v in shape.items()}
            for name in ("input_ids", "attention_mask", "token_type_ids")
        },
        "observed": {
            "n": int(x.size),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": int(x.max()),
            "truncated_share": float((x > max_length).mean()),
        },
        "max_length": int(max_length),
    }
