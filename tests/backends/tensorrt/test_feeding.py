"""Calibration feeding without TensorRT: our calibration set as Polygraphy's data loader."""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends.tensorrt.conftest import TEXTS
from workbench.backends.tensorrt.feeding import CalibrationLoader, model_inputs
from workbench.errors import CalibrationError, InputMismatchError

TWO = {"input_ids": np.dtype(np.int64), "attention_mask": np.dtype(np.int64)}


@pytest.fixture(scope="module")
def calib_set(tiny_tok, tmp_path_factory):
    from datasets import Dataset

    from workbench.data.calibset import build_calibration_set

    pool = Dataset.from_dict({"text": [f"{t} ({i})" for i in range(5) for t in TEXTS]})
    root = tmp_path_factory.mktemp("cs")
    return build_calibration_set(pool, 20, tiny_tok, strategy="length", root=root)


def test_model_inputs_are_the_graph_inputs(tiny_onnx) -> None:
    assert model_inputs(tiny_onnx) == {
        "input_ids": np.int64, "attention_mask": np.int64, "token_type_ids": np.int64,
    }  # fmt: skip


def test_loader_serves_every_calibration_row_at_one_shape(tiny_onnx, tiny_tok, calib_set) -> None:
    loader = CalibrationLoader(lambda: calib_set.batches(tiny_tok, 8), model_inputs(tiny_onnx))
    feeds = list(calib_set.batches(tiny_tok, 8))
    longest = max(f["input_ids"].shape[1] for f in feeds)
    assert loader.shape == (8, longest) and len(loader) == 3  # ceil(20 / 8)
    for batch in loader:
        assert list(batch) == ["input_ids", "attention_mask", "token_type_ids"]
        assert all(a.shape == (8, longest) and a.dtype == np.int64 for a in batch.values())
    assert list(loader) == list(loader.batches)  # Polygraphy may iterate it again
    # every real row appears, unchanged up to its own length (oracle: the tokenizer itself)
    want = {
        tuple(r[m == 1])
        for f in feeds
        for r, m in zip(f["input_ids"], f["attention_mask"], strict=True)
    }
    got = {
        tuple(r[m == 1])
        for b in loader
        for r, m in zip(b["input_ids"], b["attention_mask"], strict=True)
    }
    assert got == want and len(want) == 20
    ids = [id(a) for b in loader for a in b.values()]
    assert len(set(ids)) == len(ids)  # no aliasing between batches


def test_padding_uses_the_sets_own_pad_id() -> None:
    feed = {
        "input_ids": np.array([[5, 6, 7], [5, 9, 9]]),
        "attention_mask": np.array([[1, 1, 1], [1, 0, 0]]),
    }
    longer = {"input_ids": np.array([[5, 6, 7, 8]]), "attention_mask": np.array([[1, 1, 1, 1]])}
    loader = CalibrationLoader(lambda: [feed, longer], TWO)
    assert loader.shape == (2, 4)
    np.testing.assert_array_equal(loader.batches[0]["input_ids"][1], [5, 9, 9, 9])
    np.testing.assert_array_equal(loader.batches[0]["attention_mask"][1], [1, 0, 0, 0])
    np.testing.assert_array_equal(loader.batches[1]["input_ids"][1], [5, 6, 7, 9])  # wrapped


def test_a_two_input_model_gets_two_inputs_and_a_three_input_one_refuses(
    tiny_tok, calib_set
) -> None:
    loader = CalibrationLoader(lambda: calib_set.batches(tiny_tok, 8), TWO)
    assert all(list(b) == list(TWO) for b in loader)  # token_type_ids left out
    two_only = tiny_tok.with_inputs(tuple(TWO))
    three = {**TWO, "token_type_ids": np.dtype(np.int64)}
    with pytest.raises(InputMismatchError, match="token_type_ids"):
        CalibrationLoader(lambda: calib_set.batches(two_only, 8), three)


def test_dtype_follows_the_model_and_hash_follows_the_batches(tiny_feeds) -> None:
    as32 = {"input_ids": np.dtype(np.int32), "attention_mask": np.dtype(np.int32)}
    a = CalibrationLoader(lambda: tiny_feeds, as32)
    assert all(x.dtype == np.int32 for b in a for x in b.values())
    assert a.sha256() == CalibrationLoader(lambda: tiny_feeds, as32).sha256()
    assert a.sha256() != CalibrationLoader(lambda: tiny_feeds[:3], as32).sha256()


def test_empty_set_and_short_calibration_fail_loudly(tiny_feeds) -> None:
    with pytest.raises(CalibrationError, match="no samples"):
        CalibrationLoader(lambda: [], TWO)
    loader = CalibrationLoader(lambda: tiny_feeds, TWO)
    loader.check_served(len(loader))
    with pytest.raises(CalibrationError, match="calibrated on 0 of 1"):
        CalibrationLoader(lambda: tiny_feeds[:1], TWO).check_served(0)
    with pytest.raises(CalibrationError, match=f"on 1 of {len(loader)} batches"):
        loader.check_served(1)
