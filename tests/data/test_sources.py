"""Pool and traffic sources on real files written to tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.calibset import build_calibration_set
from workbench.data.sources import load_pool, load_traffic
from workbench.errors import DataError


@pytest.fixture(scope="module")
def frame(rt) -> pd.DataFrame:
    ds = rt.dataset.select(range(200))
    names = rt.label_names
    return pd.DataFrame({"review": ds["text"], "sentiment": [names[y] for y in ds["label"]]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_files_load_with_string_labels(frame, tmp_path, suffix):
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    pool = load_pool(path, text_column="review", label_column="sentiment")
    assert len(pool) == 200 and pool.labelled
    assert pool.label_names == ["fresh", "rotten"]
    assert pool.dataset["text"][:3] == frame["review"].tolist()[:3]
    first = pool.label_names[pool.dataset["label"][0]]
    assert first == frame["sentiment"].iloc[0]
    assert pool.source_path == str(path) and len(pool.source_sha256) == 64
    assert pool.name == "reviews"


def test_saved_dataset_dir_and_arrow_file(rt, tmp_path):
    ds = rt.dataset.select(range(120))
    ds.save_to_disk(str(tmp_path / "saved"))
    pool = load_pool(tmp_path / "saved")
    assert len(pool) == 120 and pool.label_names == rt.label_names
    arrow = next((tmp_path / "saved").glob("data-*.arrow"))
    assert not list((tmp_path / "saved").glob("cache-*"))  # the source is never written to
    pool2 = load_pool(arrow)
    assert pool2.dataset["text"] == ds["text"]
    assert pool2.label_names == rt.label_names  # the ClassLabel order from the Arrow metadata
    assert pool2.dataset["label"] == ds["label"]


def test_one_reader_for_labelled_files_pools_and_split_folders(rt, tmp_path):
    """Labelled data and pools read the same files; a folder of several splits is refused as
    labelled data (which split?) and gives its train split as a pool."""
    from datasets import DatasetDict

    from workbench.data.datasets import load_labelled_file

    ds = rt.dataset.select(range(120))
    DatasetDict({"train": ds, "test": rt.dataset.select(range(120, 160))}).save_to_disk(
        str(tmp_path / "dd")
    )
    assert load_pool(tmp_path / "dd").dataset["text"] == ds["text"]
    with pytest.raises(DataError, match="holds several splits"):
        load_labelled_file(tmp_path / "dd")
    ds.save_to_disk(str(tmp_path / "one"))
    arrow = next((tmp_path / "one").glob("data-*.arrow"))
    labelled = load_labelled_file(arrow)
    assert labelled.label_names == sorted(rt.label_names)  # names, as from any other file
    assert len(load_labelled_file(tmp_path / "one")) == len(labelled)
    txt = tmp_path / "t.txt"
    txt.write_text("caf\u00e9 one\n\nsecond\n", encoding="utf-8")
    assert load_pool(txt).dataset["text"] == ["caf\u00e9 one", "second"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="could not be read"):
        load_pool(bad)


def test_dataframe_list_and_int_labels(rt, tok, tmp_path):
    texts = rt.dataset["text"][:150]
    from_list = load_pool(texts)
    assert not from_list.labelled and from_list.source_path == ""
    assert load_pool(texts).source_sha256 == from_list.source_sha256
    df = pd.DataFrame({"text": texts, "label": rt.dataset["label"][:150]})
    from_df = load_pool(df)
    assert from_df.label_names == ["0", "1"]
    assert from_df.source_sha256 != from_list.source_sha256
    cs = build_calibration_set(
        from_df.dataset, 20, tok, root=tmp_path, source_sha256=from_df.source_sha256
    )
    assert sum(cs.manifest.label_histogram.values()) == 20
    cs2 = build_calibration_set(from_list.dataset, 20, tok, strategy="length", root=tmp_path)
    assert cs2.manifest.label_names == []


def test_bad_pool_inputs(frame, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_pool(tmp_path / "missing.csv")
    path = tmp_path / "r.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"no column 'text'.*--text-column"):
        load_pool(path)
    with pytest.raises(DataError, match="no column 'stars'"):
        load_pool(path, text_column="review", label_column="stars")
    odd = tmp_path / "r.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="unknown format"):
        load_pool(odd)
    with pytest.raises(DataError, match="empty"):
        load_pool([])
    blank = tmp_path / "blank.csv"
    blank.write_text("text,label\n,1\n   ,0\n")
    with pytest.raises(DataError, match="no non-empty texts"):
        load_pool(blank)
    no_rows = tmp_path / "no_rows.csv"
    no_rows.write_text("text,label\n\n")
    with pytest.raises(DataError, match="has no rows"):
        load_pool(no_rows)


def test_traffic_txt_and_csv(frame, tmp_path):
    txt = tmp_path / "traffic.txt"
    txt.write_text("first  line\n\n  second line \nthird\n", encoding="utf-8")
    t = load_traffic(txt)
    assert t.texts == ["first  line", "second line", "third"] and t.labels is None
    csv = tmp_path / "traffic.csv"
    frame.to_csv(csv, index=False)
    t2 = load_traffic(csv, text_column="review", label_column="sentiment")
    assert len(t2) == 200 and t2.label_names == ["fresh", "rotten"]
    assert isinstance(t2.labels, np.ndarray)
    t3 = load_traffic(csv, text_column="review")
    assert t3.labels is None


def test_bad_traffic(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_traffic(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match="is empty"):
        load_traffic(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="unreadable"):
        load_traffic(binary)
    zero = tmp_path / "zero.csv"
    zero.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_traffic(zero)


def test_default_pool_and_targets(rt, rt_splits, tok, frame, tmp_path):
    from workbench.data.sources import default_pool, load_target

    pool, test = default_pool()
    assert pool.dataset["text"] == rt_splits.calibration_pool["text"]
    assert test is not None and len(test) == len(rt_splits.test)
    assert pool.source_sha256 == rt.source_sha256 and pool.name == "rotten_tomatoes"
    profile, name = load_target("test", tok, test, pool.label_names)
    assert name == "test split" and len(profile.lengths) == len(test)
    # a traffic file with label names: mapped onto the pool's label order by name
    path = tmp_path / "traffic.csv"
    frame.to_csv(path, index=False)
    prof, _ = load_target(str(path), tok, None, ["rotten", "fresh"], "review", "sentiment")
    expected = [["rotten", "fresh"].index(s) for s in frame["sentiment"]]
    assert prof.labels is not None and prof.labels.tolist() == expected
    with pytest.raises(DataError, match="not among the pool's"):
        load_target(str(path), tok, None, ["neg", "pos"], "review", "sentiment")
    with pytest.raises(DataError, match="needs a labelled dataset"):
        load_target("test", tok, None)
    # a labelled file is split like the demo's; --whole-file keeps every row
    own, own_test = default_pool(path, "review", "sentiment")
    whole, none = default_pool(path, "review", "sentiment", whole_file=True)
    assert own_test is not None and none is None
    assert len(whole) == 200 and len(own) < 200
