"""A user's HF classifier folder: checked cheaply, loaded with its own head, exported and verified.

The oracle is transformers itself: AutoTokenizer + AutoModelForSequenceClassification
on the same folder and the same real texts.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.tiny_bert import make_tiny_hf_classifier, make_tiny_hf_encoder
from workbench.backends.onnxruntime.export import OUTPUT_NAME, export_classifier
from workbench.backends.pytorch.hf import HFModelInfo, inspect_hf_folder, load_hf_classifier
from workbench.data.datasets import load_rotten_tomatoes
from workbench.data.tokenize import TextTokenizer
from workbench.errors import BackendUnavailableError, ModelError

torch = pytest.importorskip("torch", reason="HF models need torch (extra: torch)")
transformers = pytest.importorskip("transformers", reason="HF models need transformers")

LABELS = ["negative", "neutral", "positive"]
MAX_LEN = 48


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def folder(request, tmp_path_factory) -> Path:
    return make_tiny_hf_classifier(
        tmp_path_factory.mktemp(request.param), LABELS, seed=1, model=request.param
    )


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return list(load_rotten_tomatoes().dataset["text"][:40])


def _oracle_logits(folder: Path, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    """transformers' own tokenizer and classifier on the folder: the independent reference."""
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True
    ).eval()
    batch = tok(
        texts, pairs, truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits.numpy()


def _ours(module, tok: TextTokenizer, names, texts, pairs=None) -> np.ndarray:
    feed = tok.encode(texts, pairs=pairs)
    with torch.no_grad():
        return module(**{n: torch.from_numpy(feed[n]) for n in names}).numpy()


def test_inspect_reads_labels_inputs_and_a_content_key(folder, tmp_path):
    info = inspect_hf_folder(folder)
    assert info.labels == LABELS and info.path == str(folder.resolve())
    assert info.vocab_size == 30522 and info.max_positions == 512
    expected = ("input_ids", "attention_mask") + (
        ("token_type_ids",) if info.model_type == "bert" else ()
    )
    assert info.input_names == expected
    assert info.architecture.endswith("ForSequenceClassification")
    assert inspect_hf_folder(folder).content_key == info.content_key
    other = make_tiny_hf_classifier(tmp_path / "other", LABELS, seed=2, model=info.model_type)
    assert inspect_hf_folder(other).content_key != info.content_key  # weights differ


def test_logits_equal_transformers_on_real_texts(folder, texts):
    info = inspect_hf_folder(folder)
    module = load_hf_classifier(info)
    tok = TextTokenizer.from_model_dir(folder, MAX_LEN)
    got = _ours(module, tok, info.input_names, texts)
    want = _oracle_logits(folder, texts)
    assert got.shape == (len(texts), 3)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    pairs = texts[20:] + texts[:20]
    np.testing.assert_allclose(
        _ours(module, tok, info.input_names, texts, pairs),
        _oracle_logits(folder, texts, pairs),
        atol=1e-5,
        rtol=1e-4,
    )


def test_export_takes_only_the_models_inputs_and_matches_transformers(folder, texts, tmp_path):
    info = inspect_hf_folder(folder)
    tok = TextTokenizer.from_model_dir(folder, MAX_LEN)
    module = load_hf_classifier(info)
    exp = export_classifier(module, tok, info.content_key, info.input_names, out_dir=tmp_path)
    assert exp.max_abs_err < 1e-3 and exp.min_cosine > 0.9999
    graph = onnx.load(exp.onnx_path).graph
    assert tuple(i.name for i in graph.input) == info.input_names
    assert [o.name for o in graph.output] == [OUTPUT_NAME]
    feed = tok.encode(texts)
    sess = ort.InferenceSession(exp.onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {n: feed[n] for n in info.input_names})[0]
    np.testing.assert_allclose(got, _oracle_logits(folder, texts), atol=1e-4)
    again = export_classifier(module, tok, info.content_key, info.input_names, out_dir=tmp_path)
    assert again == exp


def test_export_rejects_inputs_a_classifier_cannot_take(folder, tmp_path):
    info = inspect_hf_folder(folder)
    tok = TextTokenizer.from_model_dir(folder, MAX_LEN)
    with pytest.raises(ModelError, match="input_ids plus"):
        export_classifier(load_hf_classifier(info), tok, "k", ["attention_mask"], out_dir=tmp_path)


def _copy(folder: Path, dst: Path, skip: str) -> Path:
    shutil.copytree(folder, dst, ignore=shutil.ignore_patterns(skip))
    return dst


@pytest.mark.parametrize(
    ("skip", "needle"),
    [
        ("config.json", "no config.json"),
        ("*.safetensors", "no weights"),
        ("tokenizer.json", r"AutoTokenizer.from_pretrained\(...\).save_pretrained\(folder\)"),
    ],
)
def test_incomplete_folders_fail_in_one_line_with_the_fix(folder, tmp_path, skip, needle):
    with pytest.raises(ModelError, match=needle) as err:
        inspect_hf_folder(_copy(folder, tmp_path / "m", skip))
    assert "\n" not in str(err.value)


def test_not_a_folder(folder):
    with pytest.raises(ModelError, match="not a folder"):
        inspect_hf_folder(folder / "config.json")


def test_embedding_model_without_head_is_refused(tmp_path):
    enc = make_tiny_hf_encoder(tmp_path / "enc")
    with pytest.raises(ModelError, match=r"encoder without a classification head.*default = true"):
        inspect_hf_folder(enc)


def test_encoder_with_labels_but_no_head_weights_is_refused_at_load(tmp_path):
    enc = make_tiny_hf_encoder(
        tmp_path / "enc", id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}
    )
    info = inspect_hf_folder(enc)  # labels look real, architecture says BertModel
    with pytest.raises(ModelError, match=r"lacks weights for.*classifier"):
        load_hf_classifier(info)


def test_tokenizer_larger_than_the_models_vocab_is_refused(tmp_path):
    small = make_tiny_hf_classifier(tmp_path / "small", LABELS, vocab_size=1000)
    with pytest.raises(ModelError, match="30522 tokens but the model's vocab_size is 1000"):
        inspect_hf_folder(small)


def test_missing_transformers_names_the_extra(folder, monkeypatch):
    info = inspect_hf_folder(folder)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install -e '\.\[torch\]'"):
        load_hf_classifier(info)


def test_info_is_a_frozen_record(folder):
    info = inspect_hf_folder(folder)
    assert isinstance(info, HFModelInfo)
    with pytest.raises(AttributeError):
        info.path = "elsewhere"  # type: ignore[misc]
