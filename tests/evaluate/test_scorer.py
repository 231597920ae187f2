"""The one scorer: outputs through the Runner contract, checked against raw ORT sessions."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.calibration.conftest import random_texts
from workbench.backends.onnxruntime.runner import OrtRunner
from workbench.calibration.graph import quantizable_tensors
from workbench.data.tokenize import TextTokenizer
from workbench.errors import InputMismatchError
from workbench.evaluate.scorer import model_logits, score_feeds
from workbench.evaluate.sensitivity_proxies import tapped_runner


@pytest.fixture(scope="module")
def feeds(tiny_model):
    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    texts = random_texts(15, seed=9)
    return [tok.encode(texts[i : i + 5]) for i in range(0, 15, 5)]


def _raw(path, feeds, names=None):
    from workbench.backends.onnxruntime.runner import CPU_DISABLED_OPTIMIZERS

    sess = ort.InferenceSession(  # as the workbench's CPU sessions run (same float rounding)
        str(path),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),
    )
    wanted = {i.name for i in sess.get_inputs()}
    return [sess.run(names, {k: v for k, v in f.items() if k in wanted}) for f in feeds]


def test_logits_equal_a_raw_session_in_feed_order(tiny_onnx, feeds):
    got = model_logits(tiny_onnx, feeds, device="cpu")
    want = np.concatenate([out[0] for out in _raw(tiny_onnx, feeds)]).astype(np.float64)
    assert got.dtype == np.float64 and got.shape == (15, want.shape[1])
    np.testing.assert_array_equal(got, want)


def test_feeds_are_made_lazily_and_validated(tiny_onnx, feeds):
    made = []

    def gen():
        for i, f in enumerate(feeds):
            made.append(i)
            yield f

    with OrtRunner(tiny_onnx) as r:
        it = score_feeds(r, gen(), ["logits"])
        first = next(it)
        assert made == [0] and list(first) == ["logits"] and first["logits"].shape[0] == 5
        bad = {k: v for k, v in feeds[0].items() if k != "input_ids"}
        with pytest.raises(InputMismatchError, match="input_ids"):
            list(score_feeds(r, [bad]))


def test_tapped_runner_gives_the_raw_intermediate_tensors(tiny_onnx, feeds, tmp_path):
    names = quantizable_tensors(tiny_onnx)[:3]
    with tapped_runner(tiny_onnx, names) as tap:
        got = list(score_feeds(tap, feeds, names))
    model = onnx.load(str(tiny_onnx))
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    onnx.save(model, str(tmp_path / "raw.onnx"))
    for out, raw in zip(got, _raw(tmp_path / "raw.onnx", feeds, names), strict=True):
        assert list(out) == names
        for n, r in zip(names, raw, strict=True):
            np.testing.assert_array_equal(out[n], r)
