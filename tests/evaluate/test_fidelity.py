"""Probability-space fidelity: oracles from SciPy, hand-made flips, and a real INT8 build."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax as sp_softmax
from scipy.stats import entropy

from tests.calibration.conftest import random_texts
from workbench.errors import DataError
from workbench.evaluate.fidelity import (
    class_shifts,
    fidelity,
    kl_divergence,
    margin_change,
    max_abs_dp,
)


def test_kl_and_dp_match_scipy_on_random_logits() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 3, size=(200, 4))
    cand = ref + rng.normal(0, 0.5, size=ref.shape)
    p, q = sp_softmax(ref, axis=1), sp_softmax(cand, axis=1)
    np.testing.assert_allclose(kl_divergence(ref, cand), entropy(p, q, axis=1), rtol=1e-9)
    np.testing.assert_allclose(max_abs_dp(ref, cand), np.abs(p - q).max(axis=1), rtol=1e-12)
    assert np.all(kl_divergence(ref, ref) < 1e-12)


def test_margin_change_two_class_by_hand() -> None:
    ref = np.array([[0.0, 2.0], [1.0, 0.0]])
    cand = np.array([[0.0, 0.0], [3.0, 0.0]])
    p1 = 1 / (1 + np.exp(-2.0))  # reference sample 0: class 1 with p1
    p2 = 1 / (1 + np.exp(-1.0))
    p3 = 1 / (1 + np.exp(-3.0))
    expected = [0.0 - (2 * p1 - 1), (2 * p3 - 1) - (2 * p2 - 1)]
    np.testing.assert_allclose(margin_change(ref, cand), expected, rtol=1e-12)


def test_class_shifts_catch_false_positive_rise_at_equal_accuracy() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ref_pred = np.array([0, 0, 0, 1, 1, 1, 1, 0])  # 6/8, one FP for each class
    pred = np.array([0, 0, 1, 1, 1, 1, 1, 1])  # 6/8 too, but two FPs for class 1
    assert np.mean(ref_pred == y) == np.mean(pred == y)
    rows = class_shifts(ref_pred, pred, 2, y)
    assert rows[1].false_pos_ref == 1 and rows[1].false_pos == 2 and rows[1].false_pos_delta == 1
    assert rows[1].flips_in == 2 and rows[1].flips_out == 0
    assert rows[0].recall_ref == 0.75 and rows[0].recall == 0.5
    assert rows[1].recall_delta == 0.25


def test_fidelity_rejects_mismatched_or_nan() -> None:
    with pytest.raises(DataError, match="same test set"):
        fidelity(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(DataError, match="NaN"):
        fidelity(np.zeros((2, 2)), np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(DataError, match="labels"):
        fidelity(np.zeros((2, 2)), np.zeros((2, 2)), [0, 1, 1])


def test_fidelity_of_a_real_int8_build(tiny_onnx, tiny_model, tmp_path) -> None:
    from workbench.backends.onnxruntime.runner import OrtRunner, open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    feeds = [tok.encode(random_texts(16, seed=s)) for s in range(4)]
    table = calibrate(tiny_onnx, feeds[:2], "max", open_runner=open_ort_runner)
    qdq = write_qdq_model(tiny_onnx, table, tmp_path / "q.onnx", per_channel=True)

    def logits(path):
        with OrtRunner(path) as r:
            return np.concatenate([r.infer(f)["logits"] for f in feeds])

    ref, cand = logits(tiny_onnx), logits(qdq)
    y = ref.argmax(axis=1)  # labels = FP32 predictions: reference recall is exactly 1
    fid = fidelity(ref, cand, y)
    assert fid.n == 64 and 0 < fid.kl_mean <= fid.kl_max
    dp = np.abs(sp_softmax(ref.astype(np.float64), 1) - sp_softmax(cand.astype(np.float64), 1))
    assert fid.max_abs_dp == pytest.approx(float(dp.max()))
    assert fid.flips == int(np.sum(ref.argmax(1) != cand.argmax(1)))
    assert fid.agreement == pytest.approx(1 - fid.flips / 64)
    assert all(c.recall_ref == 1.0 or np.isnan(c.recall_ref) for c in fid.per_class)
    assert sum(c.flips_in for c in fid.per_class) == fid.flips
