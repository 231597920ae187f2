"""Length buckets, batch plans and TensorRT profile suggestions."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.shapes import (
    batch_plan,
    bucket_label,
    length_buckets,
    length_histogram,
    suggest_profile,
)
from workbench.errors import DataError


def test_buckets_and_labels():
    b = length_buckets(np.array([1, 16, 17, 24, 25, 128, 300]), 128)
    assert b.tolist() == [0, 0, 1, 1, 2, 6, 6]
    assert bucket_label(1, 128) == "17-24" and bucket_label(6, 128) == "97-128"
    h = length_histogram(np.array([3, 20, 20, 200]), 64)
    assert h == {"1-16": 1, "17-24": 2, "25-32": 0, "33-48": 0, "49-64": 1}


def test_batch_plan_covers_each_index_once_in_fresh_arrays():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 140, size=203)
    plan = batch_plan(lengths, 128, batch_size=16)
    flat = np.concatenate(plan)
    assert sorted(flat.tolist()) == list(range(203))
    assert all(len(p) <= 16 for p in plan)
    assert not any(np.shares_memory(a, b) for i, a in enumerate(plan) for b in plan[i + 1 :])
    buckets = length_buckets(lengths, 128)
    assert all(len(set(buckets[p].tolist())) == 1 for p in plan)
    with pytest.raises(DataError, match="batch_size"):
        batch_plan(lengths, 128, 0)


def test_suggest_profile_on_rotten_tomatoes(rt_splits, tok):
    lengths = tok.lengths(rt_splits.test["text"])
    prof = suggest_profile(lengths, 128)
    seq = prof["seq_len"]
    assert seq["min"] == int(lengths.min())
    assert seq["opt"] % 8 == 0 and seq["opt"] >= np.median(lengths)
    assert seq["max"] >= lengths.max() and seq["max"] <= 128 and seq["max"] % 8 == 0
    assert prof["shapes"]["input_ids"] == {
        "min": [1, seq["min"]],
        "opt": [8, seq["opt"]],
        "max": [32, seq["max"]],
    }
    assert set(prof["shapes"]) == {"input_ids", "attention_mask", "token_type_ids"}


def test_suggest_profile_caps_at_max_length():
    prof = suggest_profile(np.array([5, 50, 400, 700]), 128)
    assert prof["seq_len"]["max"] == 128 and prof["observed"]["truncated_share"] == 0.5
    with pytest.raises(DataError, match="empty"):
        suggest_profile(np.array([]), 128)
