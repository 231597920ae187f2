"""Sampling strategies for calibration sets, and exact / near-exact deduplication.

Every strategy is a pure function of (lengths, labels, seed, target): the same inputs pick
the same rows. Strata get proportional quotas (largest remainder); a stratum too small for
its quota gives the rest to the others, and that shortfall is reported, not hidden.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from workbench.data.shapes import length_buckets
from workbench.errors import DataError

STRATEGIES = ("random", "label", "length", "stratified", "matched")
STRATEGY_HELP = {
    "random": "uniform over the pool",
    "label": "stratified by label",
    "length": "stratified by token-length bucket",
    "stratified": "stratified by label and token-length bucket (default)",
    "matched": "token-length (and label) distribution matched to a target sample",
}
_SPACE = re.compile(r"\s+")


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if known, else a DataError with a did-you-mean hint."""
    if strategy in STRATEGIES:
        return strategy
    close = difflib.get_close_matches(strategy, STRATEGIES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"unknown strategy {strategy!r}{hint}; choose one of {', '.join(STRATEGIES)}")


def normalize_text(text: str) -> str:
    """Key for near-exact duplicates: NFKC, case-folded, punctuation dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = "".join(" " if unicodedata.category(c).startswith("P") else c for c in t)
    return _SPACE.sub(" ", t).strip()


def dedupe_mask(texts: Sequence[str]) -> np.ndarray:
    """Boolean keep-mask: the first of each group of exact or near-exact duplicates."""
    seen: set[str] = set()
    keep = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        key = normalize_text(t)
        if key and key not in seen:
            seen.add(key)
            keep[i] = True
    return keep


def allocate(n: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Integer quotas summing to ``n``, proportional to ``weights``, never above ``capacity``.

    Largest-remainder rounding (ties to the lower index); capped strata hand their excess to
    the others in proportion to their weights, then to any stratum with room left.
    """
    w = np.asarray(weights, dtype=np.float64)
    cap = np.asarray(capacity, dtype=np.int64)
    if int(cap.sum()) < n:
        raise DataError(f"cannot draw {n} samples from {int(cap.sum())} available")
    quota = np.zeros(len(cap), dtype=np.int64)
    remaining = n
    while remaining > 0:
        room = quota < cap
        active = room & (w > 0)
        weight = w if active.any() else (cap - quota).astype(np.float64)
        active = active if active.any() else room
        ideal = np.where(active, remaining * weight / weight[active].sum(), 0.0)
        give = np.floor(ideal).astype(np.int64)
        left = remaining - int(give.sum())
        order = np.argsort(-(ideal - give), kind="stable")
        give[order[:left]] += 1
        add = np.minimum(give, cap - quota)
        quota += add
        remaining -= int(add.sum())
    return quota


def quantile_bins(target: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Inner bin edges from the target's quantiles (ties merged); bin i is ``(e[i-1], e[i]]``."""
    qs = np.quantile(np.asarray(target, dtype=np.float64), np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(qs)


def sample_indices(
    strategy: str,
    n: int,
    lengths: np.ndarray,
    labels: np.ndarray | None,
    max_length: int,
    seed: int = 0,
    target_lengths: np.ndarray | None = None,
    target_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Sorted pool indices of the ``n`` chosen rows, and notes on any shortfall.

    ``labels`` is None (or all -1) for unlabelled pools. Example::

        idx, notes = sample_indices("stratified", 512, lengths, labels, 128, seed=0)
    """
    check_strategy(strategy)
    lengths = np.asarray(lengths, dtype=np.int64)
    size = len(lengths)
    if size == 0:
        raise DataError("the calibration pool is empty; nothing to sample from")
    if n < 1:
        raise DataError(f"N must be at least 1, got {n}")
    if n > size:
        raise DataError(f"N={n} is larger than the pool: only {size} examples are available")
    has_labels = labels is not None and bool((np.asarray(labels) >= 0).all())
    lab = np.asarray(labels, dtype=np.int64) if has_labels and labels is not None else None
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return np.sort(rng.choice(size, size=n, replace=False)), []
    if strategy in ("label", "stratified") and lab is None:
        raise DataError(
            f"strategy {strategy!r} needs labels but the pool has none (or some rows lack one); "
            "use strategy 'length' or 'random'"
        )
    notes: list[str] = []
    if strategy == "matched":
        if target_lengths is None or len(target_lengths) == 0:
            raise DataError("strategy 'matched' needs a target (e.g. --target traffic.txt)")
        strata, quota_of, notes = _matched_quotas(n, lengths, lab, target_lengths, target_labels)
        keys, inverse = np.unique(strata, return_inverse=True)
        quota = np.array([quota_of.get(int(k), 0) for k in keys], dtype=np.int64)
    else:
        buckets = length_buckets(lengths, max_length)
        if strategy == "length" or lab is None:
            strata = buckets
        elif strategy == "label":
            strata = lab
        else:
            strata = lab * (int(buckets.max()) + 1) + buckets
        keys, inverse = np.unique(strata, return_inverse=True)
        capacity = np.bincount(inverse, minlength=len(keys))
        quota = allocate(n, capacity.astype(np.float64), capacity)
    if lab is not None and strategy in ("label", "stratified"):
        n_buckets = int(length_buckets(lengths, max_length).max()) + 1
        _ensure_each_label(quota, keys, lab, inverse, n, strategy, n_buckets)
    chosen = [
        rng.choice(np.flatnonzero(inverse == s), size=int(q), replace=False)
        for s, q in enumerate(quota)
        if q > 0
    ]
    return np.sort(np.concatenate(chosen)), notes


def _ensure_each_label(
    quota: np.ndarray,
    keys: np.ndarray,
    lab: np.ndarray,
    inverse: np.ndarray,
    n: int,
    strategy: str,
    n_buckets: int,
) -> None:
    """Give every label present in the pool at least one sample (moved from the largest quota)."""
    key_label = keys if strategy == "label" else keys // n_buckets
    present = np.unique(lab)
    if n < len(present):
        raise DataError(
            f"N={n} cannot cover the pool's {len(present)} labels with strategy {strategy!r}; "
            f"use N >= {len(present)}"
        )
    for label in present:
        mine = key_label == label
        if quota[mine].sum() > 0:
            continue
        target = int(np.flatnonzero(mine)[np.argmax(np.bincount(inverse)[mine])])
        donor = int(np.argmax(np.where(key_label != label, quota, -1)))
        quota[donor] -= 1
        quota[target] += 1


def nearest_fill(desired: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Cap each ordered bin at its capacity and move the excess to the nearest bins with room.

    Bins are ordered (token-length bins), so a target the pool lacks is approximated by the
    closest lengths the pool has. ``desired`` are integers summing to at most ``capacity.sum()``.
    """
    q = np.minimum(desired, capacity).astype(np.int64)
    for b in np.flatnonzero(desired > capacity):
        excess = int(desired[b] - capacity[b])
        for d in range(1, len(q)):
            for nb in (b + d, b - d):  # ties go to the longer side
                if excess and 0 <= nb < len(q):
                    take = min(excess, int(capacity[nb] - q[nb]))
                    q[nb] += take
                    excess -= take
            if not excess:
                break
    return q


def _matched_quotas(
    n: int,
    lengths: np.ndarray,
    labels: np.ndarray | None,
    target_lengths: np.ndarray,
    target_labels: np.ndarray | None,
) -> tuple[np.ndarray, dict[int, int], list[str]]:
    """Strata (length bin x label) of the pool and their quotas following the target's mix."""
    tl = np.asarray(target_lengths, dtype=np.int64)
    # target deciles, plus edges at its min and max so pool rows outside its range get weight 0;
    # outside that range, pool quantiles (every 5%) keep "nearest length" meaningful
    lo, hi = tl.min() - 1, tl.max()
    pool_edges = quantile_bins(lengths, 20)
    outside = pool_edges[(pool_edges < lo) | (pool_edges > hi)]
    edges = np.unique(np.concatenate([[lo], quantile_bins(tl), [hi], outside]))
    n_bins = len(edges) + 1
    pool_bin = np.searchsorted(edges, lengths, side="left")
    target_bin = np.searchsorted(edges, tl, side="left")
    share = np.bincount(target_bin, minlength=n_bins) / len(tl)
    capacity = np.bincount(pool_bin, minlength=n_bins)
    desired = allocate(n, share, np.full(n_bins, n))
    bin_quota = nearest_fill(desired, capacity)
    moved = int(np.clip(desired - capacity, 0, None).sum())
    notes = []
    if moved:
        notes.append(
            f"the pool lacks {moved} of the {n} examples the target's length mix asks for; "
            "they were taken from the nearest lengths the pool has"
        )
    if labels is None:
        return pool_bin, {b: int(q) for b, q in enumerate(bin_quota)}, notes
    n_labels = int(labels.max()) + 1
    tlab = None if target_labels is None else np.asarray(target_labels, dtype=np.int64)
    if tlab is not None and (tlab >= 0).all():
        missing = sorted(set(tlab.tolist()) - set(labels.tolist()))
        if missing:
            raise DataError(
                f"strategy 'matched' cannot be satisfied: the target has label(s) {missing} "
                "that the pool has no examples of"
            )
        n_labels = max(n_labels, int(tlab.max()) + 1)
        overall = np.bincount(tlab, minlength=n_labels) / len(tlab)
    else:  # target labels unknown: keep the pool's class prior inside every length bin
        tlab = None
        overall = np.bincount(labels, minlength=n_labels) / len(labels)
    strata = pool_bin * n_labels + labels
    quotas: dict[int, int] = {}
    for b in range(n_bins):
        cap = np.bincount(labels[pool_bin == b], minlength=n_labels)
        in_bin = None if tlab is None else tlab[target_bin == b]
        w = (
            overall
            if in_bin is None or len(in_bin) == 0
            else np.bincount(in_bin, minlength=n_labels)
        )
        if bin_quota[b]:
            q = allocate(int(bin_quota[b]), w.astype(np.float64), cap)
            quotas.update({b * n_labels + y: int(q[y]) for y in range(n_labels)})
    return strata, quotas, notes
