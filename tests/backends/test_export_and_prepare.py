"""ONNX export matches PyTorch; prepare trains a head that beats chance; bad models fail clearly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from workbench.backends.onnxruntime.export import INPUT_NAMES, OUTPUT_NAME, export_onnx
from workbench.backends.pytorch.artifact import load_artifact
from workbench.data.datasets import load_rotten_tomatoes, make_splits
from workbench.data.tokenize import TextTokenizer
from workbench.errors import ModelError


def test_export_has_dynamic_axes_and_whole_classifier(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    assert [i.name for i in model.graph.input] == INPUT_NAMES
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]
    assert model.opset_import[0].version >= 17


def test_export_is_cached_and_verified(tiny_model, tmp_path):
    a = export_onnx(tiny_model, tmp_path)
    b = export_onnx(tiny_model, tmp_path)
    assert a == b
    assert a.max_abs_err < 1e-3 and a.min_cosine > 0.9999


def test_load_artifact_rejects_non_model_dirs(tmp_path):
    with pytest.raises(ModelError, match="workbench prepare"):
        load_artifact(tmp_path)


@pytest.fixture(scope="module")
def small_splits():
    return make_splits(load_rotten_tomatoes(), seed=0)


def test_prepare_logreg_head_learns_on_real_data(tiny_model, small_splits, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.backends.pytorch.prepare import prepare_classifier
    from workbench.evaluate.accuracy import predict_logits

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    art = prepare_classifier(
        small_splits,
        base_model=tiny_model.encoder_dir,
        max_train=400,
        max_length=64,
        finetune=False,
    )
    again = prepare_classifier(
        small_splits,
        base_model=tiny_model.encoder_dir,
        max_train=400,
        max_length=64,
        finetune=False,
    )
    assert again.path == art.path  # cached by content hash
    assert art.head_kind == "logreg" and art.training["train_accuracy"] > 0.55
    info = export_onnx(art)
    tok = TextTokenizer.from_model_dir(art.encoder_dir, 64)
    test = small_splits.test.select(range(200))
    with OrtRunner(info.onnx_path) as r:
        logits = predict_logits(r, test["text"], tok)
    assert logits.shape == (200, 2)
    assert np.isfinite(logits).all()
