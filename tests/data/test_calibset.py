"""Calibration-set artifact: build, save, reuse, invalidate, load, batches, bad input."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from workbench.data.calibset import (
    DATA_FILE,
    MANIFEST_FILE,
    PoolFilters,
    build_calibration_set,
    load_calibration_set,
)
from workbench.data.datasets import subset
from workbench.data.tokenize import TextTokenizer
from workbench.errors import DataError


def _build(rt, rt_splits, tok, tmp_path, n=64, **kw):
    args = {"source_path": rt.source_path, "source_sha256": rt.source_sha256, "root": tmp_path}
    args.update(kw)
    return build_calibration_set(rt_splits.calibration_pool, n, tok, **args)


def test_build_saves_parquet_and_manifest(rt, rt_splits, tok, tmp_path):
    cs = build_calibration_set(
        rt_splits.calibration_pool,
        128,
        tok,
        root=tmp_path,
        source_path=rt.source_path,
        source_sha256=rt.source_sha256,
    )
    assert cs.dir == tmp_path / "rotten_tomatoes-stratified-n128-s0"
    assert (cs.dir / DATA_FILE).is_file() and (cs.dir / MANIFEST_FILE).is_file()
    m = json.loads((cs.dir / MANIFEST_FILE).read_text())
    assert m["n"] == 128 and m["seed"] == 0 and m["strategy"] == "stratified"
    assert m["source_sha256"] == rt.source_sha256 and m["source_path"] == rt.source_path
    assert m["tokenizer_vocab_sha256"] == tok.vocab_sha256 and m["tokenizer_name"] == tok.name
    assert m["max_length"] == 128 and m["schema_version"] == 1
    assert sum(m["label_histogram"].values()) == 128
    assert set(m["label_histogram"]) == {"rotten", "fresh"}
    assert sum(m["length_histogram"].values()) == 128
    assert m["representativeness"] is None
    assert len(cs) == 128 and len(cs.lengths) == 128
    assert cs.dataset.column_names == ["text", "label"]
    # rows come from the pool, no duplicates
    pool = set(rt_splits.calibration_pool["text"])
    assert set(cs.dataset["text"]) <= pool and len(set(cs.dataset["text"])) == 128
    # lengths are the tokenizer's own
    np.testing.assert_array_equal(cs.lengths, tok.lengths(cs.dataset["text"]))


def test_stratified_matches_pool_label_and_length_mix(rt, rt_splits, tok, tmp_path):
    pool = rt_splits.calibration_pool
    cs = build_calibration_set(pool, 256, tok, root=tmp_path)
    pool_share = np.bincount(pool["label"]) / len(pool)
    set_share = np.bincount(cs.dataset["label"], minlength=2) / 256
    assert np.abs(pool_share - set_share).max() <= 1 / 256 + 1e-9
    pool_hist = cs.manifest.length_histogram
    assert pool_hist  # buckets recorded
    pool_len = tok.lengths(pool["text"])
    for q in (50, 90):
        assert abs(np.percentile(cs.lengths, q) - np.percentile(pool_len, q)) <= 3


def test_same_arguments_reuse_changed_source_rebuilds(rt, rt_splits, tok, tmp_path):
    a = _build(rt, rt_splits, tok, tmp_path, n=64)
    mtime = (a.dir / MANIFEST_FILE).stat().st_mtime_ns
    b = _build(rt, rt_splits, tok, tmp_path, n=64)
    assert (b.dir / MANIFEST_FILE).stat().st_mtime_ns == mtime
    assert b.manifest_sha256 == a.manifest_sha256
    c = _build(rt, rt_splits, tok, tmp_path, n=64, source_sha256="0" * 64)
    assert c.dir == a.dir and c.manifest.key != a.manifest.key
    assert c.manifest.source_sha256 == "0" * 64


def test_changed_pool_content_rebuilds(rt_splits, tok, tmp_path):
    pool = rt_splits.calibration_pool
    a = build_calibration_set(pool.select(range(500)), 32, tok, root=tmp_path, name="x")
    b = build_calibration_set(pool.select(range(1, 501)), 32, tok, root=tmp_path, name="x")
    assert a.manifest.pool_sha256 != b.manifest.pool_sha256
    assert load_calibration_set(tmp_path / "x").manifest.key == b.manifest.key


def test_seed_is_deterministic_and_matters(rt_splits, tok, tmp_path):
    pool = rt_splits.calibration_pool
    a = build_calibration_set(pool, 64, tok, seed=1, root=tmp_path / "a")
    b = build_calibration_set(pool, 64, tok, seed=1, root=tmp_path / "b")
    c = build_calibration_set(pool, 64, tok, seed=2, root=tmp_path / "a")
    assert a.dataset["text"] == b.dataset["text"]
    assert a.dataset["text"] != c.dataset["text"]
    assert c.dir.name.endswith("-s2")


def test_load_checks_tokenizer(rt_splits, tok, tmp_path):
    cs = build_calibration_set(rt_splits.calibration_pool, 32, tok, root=tmp_path)
    other_file = tmp_path / "other" / "tokenizer.json"
    other_file.parent.mkdir()
    spec = json.loads(tok.path.read_text())
    spec["added_tokens"] = spec["added_tokens"][:-1]  # a different (edited) tokenizer
    other_file.write_text(json.dumps(spec))
    other = TextTokenizer(other_file, max_length=128)
    assert load_calibration_set(cs.dir, tok).manifest.n == 32
    with pytest.raises(DataError, match=r"built with tokenizer .* this model's tokenizer is"):
        load_calibration_set(cs.dir, other)
    with pytest.raises(DataError, match="rebuild the set"):
        next(cs.batches(other))


def test_load_detects_tampered_data(rt_splits, tok, tmp_path):
    cs = build_calibration_set(rt_splits.calibration_pool, 32, tok, root=tmp_path)
    (cs.dir / DATA_FILE).write_bytes(b"garbage")
    with pytest.raises(DataError, match="does not match its manifest"):
        load_calibration_set(cs.dir)
    with pytest.raises(DataError, match="no calibration set"):
        load_calibration_set(tmp_path / "nope")
    # the builder repairs it instead of reusing it
    again = build_calibration_set(rt_splits.calibration_pool, 32, tok, root=tmp_path)
    assert len(again) == 32


def test_batches_cover_every_sample_once_without_aliasing(rt_splits, tok, tmp_path):
    cs = build_calibration_set(rt_splits.calibration_pool, 100, tok, root=tmp_path)
    batches = list(cs.batches(tok, batch_size=16))
    assert sum(b["input_ids"].shape[0] for b in batches) == 100
    ids = [id(b["input_ids"]) for b in batches]
    assert len(set(ids)) == len(ids)
    assert not any(
        np.shares_memory(a["input_ids"], b["input_ids"])
        for i, a in enumerate(batches)
        for b in batches[i + 1 :]
    )
    # every sample exactly once: compare the unpadded rows with a direct encode
    rows = Counter()
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask", "token_type_ids"}
        assert b["input_ids"].dtype == np.int64
        width = b["input_ids"].shape[1]
        assert b["attention_mask"][:, -1].any()  # padded only to the longest row
        assert width <= 128
        for row, mask in zip(b["input_ids"], b["attention_mask"], strict=True):
            rows[tuple(row[mask == 1])] += 1
    expected = Counter(tuple(r) for r in (tok.token_ids(cs.dataset["text"])))
    assert rows == expected
    # widths grow with the buckets: padding stays inside one bucket
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths)


def test_unlabelled_pool_and_list_of_strings(rt_splits, tok, tmp_path):
    from datasets import Dataset

    texts = rt_splits.calibration_pool["text"][:300]
    pool = Dataset.from_dict({"text": texts})
    cs = build_calibration_set(pool, 50, tok, strategy="length", root=tmp_path)
    assert cs.manifest.label_names == [] and set(cs.dataset["label"]) == {-1}
    with pytest.raises(DataError, match="needs labels"):
        build_calibration_set(pool, 50, tok, root=tmp_path)


def test_target_lengths_add_representativeness(rt, rt_splits, tok, tmp_path):
    target = tok.lengths(subset(rt_splits.test, 600)["text"])
    cs = build_calibration_set(
        rt_splits.calibration_pool, 256, tok, root=tmp_path, target_lengths=target
    )
    r = cs.manifest.representativeness
    assert r is not None and r.verdict == "representative", r.warnings
    assert 0 <= r.length_psi < 0.1


@pytest.mark.parametrize(
    ("n", "strategy", "message"),
    [
        (10_000, "stratified", r"N=10000 is larger than the pool: only \d+ examples are available"),
        (0, "stratified", "N must be at least 1"),
        (1, "stratified", "cannot cover the pool's 2 labels"),
        (8, "stratifed", "did you mean 'stratified'"),
        (8, "matched", "needs a target"),
    ],
)
def test_bad_input_is_one_line_data_error(rt_splits, tok, tmp_path, n, strategy, message):
    with pytest.raises(DataError, match=message) as info:
        build_calibration_set(rt_splits.calibration_pool, n, tok, strategy=strategy, root=tmp_path)
    assert "\n" not in str(info.value)


def test_empty_pool_and_filters(rt_splits, tok, tmp_path):
    pool = rt_splits.calibration_pool
    with pytest.raises(DataError, match="pool is empty"):
        build_calibration_set(pool.select([]), 8, tok, root=tmp_path)
    short = build_calibration_set(pool, 32, tok, root=tmp_path, filters=PoolFilters(max_tokens=12))
    assert short.lengths.max() <= 12 and short.dir.name.endswith("-len0-12")
    assert short.manifest.filters["dropped_by_length"] > 0
    with pytest.raises(DataError, match=r"only .* examples are available"):
        build_calibration_set(pool, 2000, tok, root=tmp_path, filters=PoolFilters(max_tokens=12))


def test_near_duplicates_are_dropped(tok, tmp_path):
    from datasets import Dataset

    texts = ["A fine film.", "a fine   film", "A FINE FILM!", "Dull.", "dull", "Moving"]
    pool = Dataset.from_dict({"text": texts, "label": [1, 1, 1, 0, 0, 1]})
    cs = build_calibration_set(pool, 3, tok, strategy="random", root=tmp_path)
    assert sorted(cs.dataset["text"]) == ["A fine film.", "Dull.", "Moving"]
    assert cs.manifest.filters["dropped_duplicates"] == 3
    with pytest.raises(DataError, match="only 3 examples are available"):
        build_calibration_set(pool, 4, tok, strategy="random", root=tmp_path)


def test_new_target_reassesses_without_resampling(rt_splits, tok, tmp_path):
    from workbench.data.representativeness import TextProfile

    pool = rt_splits.calibration_pool
    plain = build_calibration_set(pool, 64, tok, root=tmp_path)
    data_mtime = (plain.dir / DATA_FILE).stat().st_mtime_ns
    assert plain.manifest.representativeness is None and plain.manifest.target_key == ""
    test = TextProfile.from_texts(rt_splits.test["text"][:400], tok)
    with_test = build_calibration_set(pool, 64, tok, root=tmp_path, target=test, target_name="t")
    assert (with_test.dir / DATA_FILE).stat().st_mtime_ns == data_mtime  # same rows
    assert with_test.dataset["text"] == plain.dataset["text"]
    r1 = with_test.manifest.representativeness
    assert r1 is not None and r1.target == "t" and with_test.manifest.target_key
    short = TextProfile.from_texts([t for t in rt_splits.test["text"] if len(t) < 40][:200], tok)
    again = build_calibration_set(pool, 64, tok, root=tmp_path, target=short, target_name="s")
    r2 = again.manifest.representativeness
    assert r2 is not None and r2.target == "s" and r2.length_psi > r1.length_psi
    assert (again.dir / DATA_FILE).stat().st_mtime_ns == data_mtime
    # 'matched' samples by the target, so a new target means new rows
    m1 = build_calibration_set(pool, 64, tok, strategy="matched", root=tmp_path, target=test)
    m2 = build_calibration_set(pool, 64, tok, strategy="matched", root=tmp_path, target=short)
    assert m1.dir == m2.dir and m1.dataset["text"] != m2.dataset["text"]
    assert np.median(m2.lengths) < np.median(m1.lengths)
