"""Sanity warnings: a constant or chance-level model and a tokenizer that outputs only special
tokens are named; a sound model on real data is not. Planted predictions and real tokenizers."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from workbench.evaluate.sanity import prediction_warnings, token_warnings


def test_constant_predictor_is_degenerate():
    labels = np.array([0] * 60 + [1] * 40)
    out = prediction_warnings(np.zeros(100, dtype=int), labels, 2, "ort-fp32")
    assert any("predicts class 0 for 100%" in w for w in out)
    assert any("not above the majority-class rate 60.0%" in w for w in out)  # acc 60% = majority


def test_nearly_constant_predictor_warns_at_95_percent_not_below():
    labels = np.array([0, 1] * 50)
    preds = np.zeros(100, dtype=int)
    preds[:5] = 1  # 95% class 0
    assert any("95%" in w for w in prediction_warnings(preds, labels, 2, "b"))
    preds[:6] = 1  # 94%
    assert not any("predicts class" in w for w in prediction_warnings(preds, labels, 2, "b"))


def test_accuracy_not_above_majority_warns_even_with_varied_predictions():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.3).astype(int)  # ~70% class 0
    preds = rng.integers(0, 2, 400)  # varied, about 50% accurate
    out = prediction_warnings(preds, labels, 2, "torch-fp32")
    assert len(out) == 1 and "majority-class rate" in out[0]
    good = labels.copy()
    good[:20] = 1 - good[:20]  # 95% accurate, both classes predicted
    assert prediction_warnings(good, labels, 2, "torch-fp32") == []


def _special_only_tokenizer(path: Path) -> Path:
    """A BPE tokenizer with an empty vocabulary: every text encodes as [CLS] [SEP]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE(vocab={"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}, merges=[]))
    tok.add_special_tokens(["[PAD]", "[CLS]", "[SEP]"])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tok.save(str(path))
    return path


def test_tokenizer_that_outputs_only_special_tokens_is_degenerate(tmp_path):
    from workbench.data.datasets import load_rotten_tomatoes
    from workbench.data.tokenize import TextTokenizer

    texts = list(load_rotten_tomatoes().dataset.select(range(50))["text"])
    bad = TextTokenizer(_special_only_tokenizer(tmp_path / "tokenizer.json"), 64)
    assert bad.encode(texts[:1])["input_ids"].tolist() == [[1, 2]]  # [CLS] [SEP] indeed
    out = token_warnings(bad.content_lengths(texts), bad.lengths(texts), bad.max_length)
    assert len(out) == 1 and "0 non-special tokens" in out[0]


def test_real_tokenizer_on_real_texts_is_sound_and_truncation_is_named(tiny_model):
    from workbench.data.datasets import load_rotten_tomatoes
    from workbench.data.tokenize import TextTokenizer

    texts = list(load_rotten_tomatoes().dataset.select(range(50))["text"])
    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, 128)
    content, lengths = tok.content_lengths(texts), tok.lengths(texts)
    assert (lengths - content == 2).all()  # exactly [CLS] and [SEP] are special
    assert token_warnings(content, lengths, 128) == []
    short = TextTokenizer.from_model_dir(tiny_model.encoder_dir, 8)
    out = token_warnings(short.content_lengths(texts), short.lengths(texts), 8)
    share = np.mean(short.lengths(texts) > 8)
    assert (len(out) == 1 and "cut at max_length = 8" in out[0]) == (share > 0.9)


@pytest.fixture(scope="module")
def constant_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A whole `workbench run` (ORT FP32 only) of a model that always predicts 'neg'."""
    pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
    import pandas as pd
    import tomli_w
    import torch
    import transformers

    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.cli import main
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("constant")
    model_dir = make_tiny_hf_classifier(root / "model", ["neg", "pos"], seed=2)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0, -5.0]))
    model.save_pretrained(model_dir)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=4).select(range(80))
    labels = [["neg", "pos"][i] for i in ds["label"]]
    pd.DataFrame({"text": ds["text"], "label": labels}).to_csv(root / "t.csv", index=False)
    exp = {
        "name": "always-neg",
        "model": {"path": str(model_dir)},
        "data": {"test": str(root / "t.csv"), "max_length": 64},
        "calibration": {"compare": []},
        "evaluate": {"shapes": [[1, 32]], "iterations": 2, "warmup": 1},
        "gate": {"enabled": False},
        "build": [{"backend": "onnxruntime", "precision": "fp32"}],
    }
    (root / "exp.toml").write_text(tomli_w.dumps(exp))
    args = ["run", str(root / "exp.toml"), "--reports", str(root / "reports"), "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert main(args) == 0
    (run_dir,) = (root / "reports").iterdir()
    return run_dir, stdout.getvalue()


def test_constant_model_warnings_reach_run_json_terminal_and_report(constant_run):
    from workbench.results.records import load_run

    run_dir, stdout = constant_run
    run = load_run(run_dir)
    assert run.run_id.endswith("-always-neg")  # named after the experiment, not the test file
    assert any("predicts class 0 for 100%" in w for w in run.sanity_warnings)
    assert "warning: degenerate model: ort-fp32 predicts class 0 for 100%" in stdout
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"<title>workbench report · {run.run_id}</title>" in html
    assert "experiment always-neg" in html
    assert 'id="sanity"' in html and "predicts class 0 for 100%" in html
    from workbench.gate import evaluate_gate, parse_policy

    policy = parse_policy({"max_accuracy_drop": 0.01})
    decision = evaluate_gate(run_dir, "ort-fp32", run_dir, "ort-fp32", policy, allow_same=True)
    # the gate's verdict carries the warning that it is about a degenerate model
    assert [w for w in decision.warnings if w.startswith("sanity: ")] == [
        f"sanity: {w}" for w in run.sanity_warnings
    ]
