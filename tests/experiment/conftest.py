"""A user's experiment made in the test: a tiny random HF classifier + real texts in CSV files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

NAMES = ["rotten", "fresh"]


@pytest.fixture(scope="module")
def user_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """experiment.toml for a tiny HF folder, a 120-row test CSV and a 140-row calibration CSV."""
    pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.cli import main
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("user")
    model = make_tiny_hf_classifier(root / "model", ["fresh", "rotten"], seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(260))
    df = pd.DataFrame({"sentence": ds["text"], "y": [NAMES[i] for i in ds["label"]]})
    df.iloc[:120].to_csv(root / "val.csv", index=False)
    df.iloc[120:].to_csv(root / "calib.csv", index=False)
    exp = root / "experiment.toml"
    args = ["init", "--model", str(model), "--test", str(root / "val.csv"), "--calibration",
            str(root / "calib.csv"), "--text-column", "sentence", "--label-column", "y",
            "--out", str(exp)]  # fmt: skip
    assert main(args) == 0
    return exp


# The comparison tests share the calibration tests' tiny-model feeds.
from tests.calibration.conftest import calib_texts, tiny_tokenizer, unpadded_feeds  # noqa: E402, F401
