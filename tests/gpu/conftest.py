"""Fixtures for the GPU tests: tiny random classifiers built in memory (no tokenizer needed)."""

from __future__ import annotations

import numpy as np
import pytest


def random_feed(batch: int, seq: int, seed: int, pad: bool = False) -> dict[str, np.ndarray]:
    """Random token ids (never zeros); with ``pad`` the rows get different true lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    if pad:
        for i, n in enumerate(rng.integers(seq // 4, seq + 1, size=batch)):
            mask[i, n:] = 0
            ids[i, n:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _bert_config(**extra: object):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        attn_implementation="sdpa",
        **extra,
    )


@pytest.fixture
def mean_pool_classifier():
    """The workbench's MeanPoolClassifier around a tiny random BERT (fresh per test)."""
    torch = pytest.importorskip("torch", reason="needs torch (extra: torch)")
    from transformers import BertModel

    from workbench.backends.pytorch.model import MeanPoolClassifier

    torch.manual_seed(0)
    model = MeanPoolClassifier(BertModel(_bert_config(), add_pooling_layer=False), 2)
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)
    return model.eval()


@pytest.fixture
def hf_classifier():
    """A tiny random Hugging Face BertForSequenceClassification (3 labels)."""
    torch = pytest.importorskip("torch", reason="needs torch (extra: torch)")
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    return BertForSequenceClassification(_bert_config(num_labels=3)).eval()
