"""Sentence-pair tokenization truncates exactly as transformers does for the same tokenizer.json."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.datasets import LabelledData
from workbench.data.tokenize import TextTokenizer
from workbench.errors import DataError


@pytest.fixture(scope="module")
def pairs(rt: LabelledData) -> tuple[list[str], list[str]]:
    """Real review sentences paired with other reviews: lengths vary on both sides."""
    texts = list(rt.dataset["text"][:300])
    return texts, texts[150:] + texts[:150]


def _oracle(tok: TextTokenizer):
    """transformers' fast tokenizer on the same tokenizer.json: the independent reference."""
    transformers = pytest.importorskip("transformers")
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok.path))


def _rows(feed: dict[str, np.ndarray], name: str) -> list[list[int]]:
    masks = feed["attention_mask"].astype(bool)
    return [row[m].tolist() for row, m in zip(feed[name], masks, strict=True)]


@pytest.mark.parametrize("max_length", [8, 16, 40, 128])
def test_pairs_truncate_like_transformers(tok, pairs, max_length):
    ours = TextTokenizer(tok.path, max_length=max_length)
    oracle = _oracle(tok)
    first, second = pairs
    want = oracle(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    got = ours.encode(first, pairs=second)
    assert _rows(got, "input_ids") == want["input_ids"]
    assert _rows(got, "token_type_ids") == want["token_type_ids"]
    assert got["input_ids"].shape[1] == max(len(r) for r in want["input_ids"])
    # the second segment is really there: type id 1 after the first [SEP]
    assert (got["token_type_ids"].max(axis=1) == 1).all()


@pytest.mark.parametrize("max_length", [8, 40])
def test_single_texts_truncate_like_transformers(tok, pairs, max_length):
    ours = TextTokenizer(tok.path, max_length=max_length)
    oracle = _oracle(tok)
    want = oracle(pairs[0], truncation=True, max_length=max_length, return_token_type_ids=True)
    got = ours.encode(pairs[0])
    assert _rows(got, "input_ids") == want["input_ids"]
    assert not got["token_type_ids"].any()


def test_pair_lengths_are_untruncated_and_padding_is_respected(tok, pairs):
    first, second = pairs
    oracle = _oracle(tok)
    untruncated = oracle(first, second)["input_ids"]
    assert tok.lengths(first, pairs=second).tolist() == [len(r) for r in untruncated]
    assert tok.token_ids(first[:5], pairs=second[:5]) == untruncated[:5]
    feed = tok.encode(first[:4], pad_to=100, pairs=second[:4])
    assert feed["input_ids"].shape == (4, 100)
    assert (feed["input_ids"][feed["attention_mask"] == 0] == tok.pad_id).all()


def test_vocab_size_counts_added_tokens(tok):
    oracle = _oracle(tok)
    assert tok.vocab_size == len(oracle) == 30522


def test_pairs_of_another_length_fail_clearly(tok):
    with pytest.raises(DataError, match="text_pair_column"):
        tok.encode(["a", "b"], pairs=["only one"])
