"""SmoothQuant migration: exact in float, and it recovers INT8 agreement on planted outliers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.calibration.conftest import random_texts
from tests.calibration.recovery_helpers import (
    OUTLIER_CHANNELS,
    agreement,
    feeds_of,
    logits,
    plant_outliers,
    session,
)
from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.qdq import write_qdq_model
from workbench.calibration.smoothquant import smooth_model, smoothing_sites
from workbench.calibration.stats import channel_absmax
from workbench.calibration.table import calibrate
from workbench.errors import ConfigError


@pytest.fixture(scope="module")
def outlier_onnx(tiny_onnx, tmp_path_factory):
    return plant_outliers(tiny_onnx, tmp_path_factory.mktemp("sq") / "outliers.onnx", gain=8.0)


@pytest.fixture(scope="module")
def calib_feeds(tiny_tokenizer):
    return feeds_of(tiny_tokenizer, random_texts(64, seed=1))


@pytest.fixture(scope="module")
def test_feeds(tiny_tokenizer):
    return feeds_of(tiny_tokenizer, random_texts(1024, seed=2), batch=64)


def _tapped(path, names, out):
    model = onnx.load(str(path))
    for n in names:
        model.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(out))
    return out


def test_channel_absmax_matches_numpy_at_real_tokens(outlier_onnx, calib_feeds, tmp_path):
    sites = smoothing_sites(outlier_onnx)
    assert len(sites) == 4  # embeddings LN, attention-output LN x2, layer-0 output LN
    got = channel_absmax(outlier_onnx, sites, calib_feeds, open_runner=open_ort_runner)
    sess = session(_tapped(outlier_onnx, sites, tmp_path / "tap.onnx"))
    for name in sites:
        want = np.zeros(32, dtype=np.float32)
        for f in calib_feeds:
            act = sess.run([name], f)[0]
            real = act[f["attention_mask"].astype(bool)]  # [tokens, 32]
            want = np.maximum(want, np.abs(real).max(axis=0))
        np.testing.assert_allclose(got[name], want, rtol=1e-6)
        assert got[name][list(OUTLIER_CHANNELS)].min() > 5 * np.median(got[name])


def test_smoothed_model_equals_original_in_float(outlier_onnx, calib_feeds, test_feeds, tmp_path):
    sites = smoothing_sites(outlier_onnx)
    amax = channel_absmax(outlier_onnx, sites, calib_feeds, open_runner=open_ort_runner)
    out = smooth_model(outlier_onnx, amax, 0.5, tmp_path / "smooth.onnx")
    want, got = logits(outlier_onnx, test_feeds), logits(out, test_feeds)
    assert np.abs(got - want).max(axis=1).max() < 1e-4
    # the MatMul inputs really changed: their outliers are gone
    after = channel_absmax(out, sites, calib_feeds, open_runner=open_ort_runner)
    for name in sites:
        ratio_before = amax[name].max() / np.median(amax[name])
        ratio_after = after[name].max() / np.median(after[name])
        assert ratio_after < ratio_before / 3, name
    restores = [n for n in onnx.load(str(out)).graph.node if n.name.endswith("_unsmooth")]
    assert len(restores) == len(sites)  # post-LN BERT: each LN output is also a residual


def test_smoothing_recovers_static_int8_agreement(outlier_onnx, calib_feeds, test_feeds, tmp_path):
    """Whole model, static max, per-channel weights: fewer flipped rows and smaller logit
    error with smoothing (on this seed ~13 -> ~8 flips of 1024; the weights carry gain 8 so
    layer errors reach the logits, see plant_outliers)."""
    ref = logits(outlier_onnx, test_feeds)
    plain = write_qdq_model(
        outlier_onnx,
        calibrate(outlier_onnx, calib_feeds, "max", open_runner=open_ort_runner),
        tmp_path / "q.onnx",
        True,
    )
    amax = channel_absmax(
        outlier_onnx, smoothing_sites(outlier_onnx), calib_feeds, open_runner=open_ort_runner
    )
    smooth = smooth_model(outlier_onnx, amax, 0.5, tmp_path / "s.onnx")
    smooth_q = write_qdq_model(
        smooth,
        calibrate(smooth, calib_feeds, "max", open_runner=open_ort_runner),
        tmp_path / "sq.onnx",
        True,
    )
    q_plain, q_smooth = logits(plain, test_feeds), logits(smooth_q, test_feeds)
    err_plain, err_smooth = np.abs(q_plain - ref).mean(), np.abs(q_smooth - ref).mean()
    assert agreement(q_smooth, ref) > agreement(q_plain, ref), (err_plain, err_smooth)
    assert err_smooth < err_plain


@pytest.mark.parametrize("skip_layer_norm", [False, True])
def test_fused_graph_is_smoothed_exactly(
    outlier_onnx, calib_feeds, test_feeds, tmp_path, skip_layer_norm
):
    """ORT-fused BERT: Layer/EmbedLayerNormalization feeding MatMuls (the workbench's fused
    graph), or ORT's own SkipLayerNormalization (its optimizer's default); exact in float."""
    from workbench.backends.onnxruntime.fusion import fuse_bert

    fused = Path(fuse_bert(outlier_onnx, tmp_path / "fused.onnx", num_heads=2, cache=False).path)
    expected = {"LayerNormalization", "EmbedLayerNormalization"}
    if skip_layer_norm:  # a user's model optimized by ORT's transformer optimizer as it defaults
        from onnxruntime.transformers.optimizer import optimize_model

        optimize_model(str(outlier_onnx), "bert", num_heads=2).save_model_to_file(
            str(tmp_path / "ort.onnx")
        )
        fused, expected = tmp_path / "ort.onnx", {"SkipLayerNormalization", "LayerNormalization"}
    norms = {n.output[0]: n.op_type for n in onnx.load(str(fused)).graph.node}
    sites = smoothing_sites(fused)
    assert {norms[s] for s in sites} == expected
    out = smooth_model(
        fused,
        channel_absmax(fused, sites, calib_feeds, open_runner=open_ort_runner),
        0.5,
        tmp_path / "s.onnx",
    )
    assert np.abs(logits(out, test_feeds) - logits(fused, test_feeds)).max() < 1e-4


def test_bad_alpha_and_missing_statistics_are_refused(outlier_onnx, tmp_path):
    with pytest.raises(ConfigError, match="alpha"):
        smooth_model(outlier_onnx, {}, 1.5, tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="channel_absmax"):
        smooth_model(outlier_onnx, {}, 0.5, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
