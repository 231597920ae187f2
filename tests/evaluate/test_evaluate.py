"""Metrics match scikit-learn's definitions; latency records are sane; children measure memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.backends.onnxruntime.runner import OrtRunner
from workbench.data.tokenize import TextTokenizer
from workbench.errors import ModelError
from workbench.evaluate.accuracy import accuracy_result, predict_logits, save_predictions
from workbench.evaluate.isolated import LatencySpec, measure_isolated
from workbench.evaluate.latency import fixed_shape_feed, measure_latency


def test_accuracy_agreement_and_fidelity(tmp_path):
    labels = np.array([0, 1, 1, 0, 1])
    ref = np.array([[2.0, 0], [0, 2], [0, 2], [2, 0], [2, 0]])
    cand = ref.copy()
    cand[1] = [3.0, 0]  # flips sample 1 to class 0
    acc = accuracy_result(cand, labels, ref, 2, "p.parquet")
    assert acc.accuracy == pytest.approx(3 / 5)
    assert acc.agreement == pytest.approx(4 / 5)
    assert acc.logit_max_abs_err == pytest.approx(3.0)
    assert acc.logit_cosine_min == pytest.approx(0.0)
    assert acc.confusion == [[2, 0], [2, 1]]
    rel = save_predictions(tmp_path, "b", labels, cand)
    df = pd.read_parquet(tmp_path / rel)
    assert df["pred"].tolist() == [0, 0, 1, 0, 0]


def test_nan_logits_are_refused():
    with pytest.raises(ModelError, match="NaN"):
        accuracy_result(np.array([[np.nan, 0.0]]), np.array([0]), np.zeros((1, 2)), 2, "p")


def test_predict_logits_keeps_input_order(tiny_model, tiny_onnx):
    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, 64)
    texts = ["short", "a much longer sentence about a film " * 3, "mid length text here"]
    with OrtRunner(tiny_onnx) as r:
        batched = predict_logits(r, texts, tok, batch_size=2)
        single = np.concatenate([r.infer(tok.encode([t]))["logits"] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_latency_record(tiny_model, tiny_onnx):
    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, 64)
    feed = fixed_shape_feed(["a film"], tok, 4, 32)
    assert feed["input_ids"].shape == (4, 32)
    with OrtRunner(tiny_onnx) as r:
        lat = measure_latency(r, feed, iterations=20, warmup=2)
    assert lat.iterations == 20 and len(lat.samples_ms) == 20
    assert 0 < lat.p50_ms <= lat.p90_ms <= lat.p99_ms
    assert lat.throughput_seq_per_s == pytest.approx(4 / (lat.p50_ms / 1e3))


def test_isolated_child_reports_own_memory(tiny_model, tiny_onnx):
    from workbench.backends.registry import Artifact, BuildRequest

    req = BuildRequest(
        name="ort-fp32", backend="onnxruntime", device="cpu", precision="fp32", compile=False,
        cuda_graphs=False, fp32_onnx=str(tiny_onnx), torch_model="",
        tokenizer_file=str(tiny_model.encoder_dir / "tokenizer.json"), max_length=16,
        table_file="", method="entropy", calibrator="workbench", per_channel=True, exclude=(),
        cache_dir="",
    )  # fmt: skip
    art = Artifact(str(tiny_onnx), "sha", "FP32")
    spec = LatencySpec(req, art, [(1, 16), (2, 16)], 5, 1, 5.0, 1)
    out = measure_isolated(spec)
    assert [(x.batch_size, x.seq_len) for x in out.latency] == [(1, 16), (2, 16)]
    assert 20 < out.peak_rss_mb < 4000
