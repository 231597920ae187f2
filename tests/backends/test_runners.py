"""The Runner contract: validation before the backend, and ORT agreeing with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.onnxruntime.runner import OrtRunner
from workbench.data.tokenize import TextTokenizer
from workbench.errors import InputMismatchError, ModelError


@pytest.fixture(scope="module")
def tok(tiny_model):
    return TextTokenizer.from_model_dir(tiny_model.encoder_dir, 64)


def test_ort_matches_torch_within_tolerance(tiny_model, tiny_onnx, tok):
    from workbench.backends.pytorch.model import load_torch_classifier
    from workbench.backends.pytorch.runner import TorchRunner

    feed = tok.encode(["a fine film", "a long and dull film that never ends " * 3])
    with OrtRunner(tiny_onnx) as o, TorchRunner(load_torch_classifier(tiny_model)) as t:
        a, b = o.infer(feed)["logits"], t.infer(feed)["logits"]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_missing_input_is_named(tiny_onnx, tok):
    feed = tok.encode(["x"])
    del feed["attention_mask"]
    with OrtRunner(tiny_onnx) as r, pytest.raises(InputMismatchError, match="attention_mask"):
        r.infer(feed)


def test_wrong_rank_and_dtype_kind_are_refused(tiny_onnx, tok):
    feed = tok.encode(["x"])
    with OrtRunner(tiny_onnx) as r:
        with pytest.raises(InputMismatchError, match="rank"):
            r.infer({**feed, "input_ids": feed["input_ids"][0]})
        with pytest.raises(InputMismatchError, match="float"):
            r.infer({**feed, "input_ids": feed["input_ids"].astype(np.float32)})
        # int32 feeds are widened, not refused
        out = r.infer({k: v.astype(np.int32) for k, v in feed.items()})
        assert out["logits"].shape == (1, 2)


def test_corrupt_and_missing_models_fail_in_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    with pytest.raises(ModelError, match="cannot load") as err:
        OrtRunner(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="does not exist"):
        OrtRunner(tmp_path / "nope.onnx")
