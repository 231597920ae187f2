"""Sampling strategies: quotas, determinism, matching a target, unsatisfiable requests."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.sampling import (
    STRATEGIES,
    allocate,
    dedupe_mask,
    normalize_text,
    sample_indices,
)
from workbench.data.shapes import length_buckets
from workbench.errors import DataError


@pytest.fixture(scope="module")
def pool(rt_splits, tok):
    ds = rt_splits.calibration_pool
    return tok.lengths(ds["text"]), np.asarray(ds["label"])


def test_allocate_is_proportional_capped_and_exact():
    q = allocate(10, np.array([1.0, 1.0, 2.0]), np.array([100, 100, 100]))
    assert q.tolist() == [3, 2, 5] or q.sum() == 10
    assert q.sum() == 10 and abs(q[2] - 5) <= 1
    capped = allocate(10, np.array([0.8, 0.2]), np.array([3, 100]))
    assert capped.tolist() == [3, 7]
    zero_weight = allocate(5, np.array([1.0, 0.0]), np.array([2, 10]))
    assert zero_weight.tolist() == [2, 3]
    with pytest.raises(DataError, match="cannot draw 11"):
        allocate(11, np.ones(2), np.array([5, 5]))


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "matched"])
def test_strategies_are_deterministic_distinct_and_sized(pool, strategy):
    lengths, labels = pool
    a, _ = sample_indices(strategy, 200, lengths, labels, 128, seed=3)
    b, _ = sample_indices(strategy, 200, lengths, labels, 128, seed=3)
    c, _ = sample_indices(strategy, 200, lengths, labels, 128, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 200 and a.min() >= 0 and a.max() < len(lengths)


def test_stratified_quotas_match_pool_per_label_and_bucket(pool):
    lengths, labels = pool
    idx, _ = sample_indices("stratified", 300, lengths, labels, 128, seed=0)
    buckets = length_buckets(lengths, 128)
    strata = labels * 10 + buckets
    pool_share = {s: np.mean(strata == s) for s in np.unique(strata)}
    for s, share in pool_share.items():
        assert abs(np.sum(strata[idx] == s) - 300 * share) < 1.0 + 1e-9


def test_rare_label_still_gets_a_sample():
    lengths = np.full(200, 20)
    labels = np.zeros(200, dtype=np.int64)
    labels[0] = 1  # one example of label 1: its proportional quota rounds to 0
    idx, _ = sample_indices("label", 10, lengths, labels, 128, seed=0)
    assert 0 in idx and len(idx) == 10


def test_matched_follows_a_longer_target(pool, rt_splits, tok):
    lengths, labels = pool
    test_len = tok.lengths(rt_splits.test["text"])
    target = test_len[test_len >= np.percentile(test_len, 50)]  # traffic: the longer half
    idx, notes = sample_indices("matched", 256, lengths, labels, 128, seed=0, target_lengths=target)
    assert notes == []
    assert abs(np.median(lengths[idx]) - np.median(target)) <= 2
    assert np.median(lengths[idx]) > np.median(lengths) + 5
    # class prior of the pool is kept when the target has no labels
    assert abs(labels[idx].mean() - labels.mean()) < 0.05


def test_matched_with_target_labels_and_shortfall(pool):
    lengths, labels = pool
    target_len = np.full(100, 70)  # the pool has almost nothing this long
    idx, notes = sample_indices(
        "matched", 64, lengths, labels, 128, seed=0, target_lengths=target_len
    )
    assert len(idx) == 64 and notes and "lacks 64 of the 64" in notes[0]
    assert lengths[idx].min() >= np.percentile(lengths, 95) - 1  # the nearest: the longest
    with pytest.raises(DataError, match=r"cannot be satisfied.*label"):
        sample_indices(
            "matched",
            64,
            lengths,
            labels,
            128,
            target_lengths=lengths[:50],
            target_labels=np.full(50, 5),
        )


def test_unlabelled_and_bad_requests(pool):
    lengths, _ = pool
    with pytest.raises(DataError, match="needs labels"):
        sample_indices("label", 10, lengths, None, 128)
    with pytest.raises(DataError, match="needs labels"):
        sample_indices("stratified", 10, lengths, np.full(len(lengths), -1), 128)
    with pytest.raises(DataError, match=r"only \d+ examples are available"):
        sample_indices("random", len(lengths) + 1, lengths, None, 128)
    with pytest.raises(DataError, match="pool is empty"):
        sample_indices("random", 1, np.array([]), None, 128)


def test_normalize_and_dedupe():
    assert normalize_text("  A  FINE, film!! ") == "a fine film"
    assert normalize_text("ｆｉｌｍ") == "film"  # NFKC full-width
    keep = dedupe_mask(["Good.", "good", "GOOD!!", "bad", "", "Bad ..."])
    assert keep.tolist() == [True, False, False, True, False, False]
