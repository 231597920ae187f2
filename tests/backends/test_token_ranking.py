"""``per-token-ffn-down-worst-K``: the narrowing FFN MatMuls ranked, without labels, by how much
per-token activations bring the model nearer FP32 on the calibration set; only the K best go
per-token, built through the registry exactly as the search builds its candidate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.backends.test_fused_builds import _request
from tests.backends.test_recovery_build import _load, _req
from tests.calibration.conftest import random_texts
from workbench.errors import CalibrationError

PAIR = ("smoothquant-0.8", "per-token-ffn-down-worst-1")


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=210 + s)) for s in range(3)]  # padded batches


@pytest.fixture(scope="module")
def ranked(tiny_model, tiny_onnx, feeds, tmp_path_factory):
    """(FP32 fused model, dynamic INT8 without the narrowing FFN MatMuls, them, gains, folder)."""
    from workbench.backends.onnxruntime.build import quantize_dynamic_int8
    from workbench.backends.onnxruntime.recovery import ffn_matmuls
    from workbench.backends.onnxruntime.token_ranking import ffn_down_ranking
    from workbench.backends.registry import get_backend

    folder = tmp_path_factory.mktemp("ranking")
    req = _request(tiny_model, tiny_onnx, "", "fp32", "fused", folder / "cache")
    fp32 = get_backend("onnxruntime").build(req, None).model_path
    nodes = ffn_matmuls(onnx.load(fp32, load_external_data=False), narrowing_only=True)
    without = quantize_dynamic_int8(fp32, True, (), quantized_later=tuple(nodes)).path
    gains = ffn_down_ranking(fp32, without, nodes, lambda: iter(feeds), folder)
    return fp32, without, nodes, gains, folder


def _ort_kl(model, ref_logits, feeds) -> float:
    """Mean KL(softmax(ref) || softmax(model)) with scipy: an oracle for the ranking's own."""
    import onnxruntime as ort
    from scipy.special import softmax
    from scipy.stats import entropy

    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = np.concatenate([s.run(["logits"], f)[0] for f in feeds])
    return float(np.mean(entropy(softmax(ref_logits, axis=1), softmax(got, axis=1), axis=1)))


def test_ranking_measures_each_layer_against_all_per_tensor(ranked, feeds, tmp_path):
    """One entry per narrowing MatMul, largest gain first; every entry's KL plus its gain is
    the same all-per-tensor KL; the top layer's KL matches a scipy oracle on that variant."""
    import onnxruntime as ort

    from workbench.backends.onnxruntime.token_ranking import _variant

    fp32, without, nodes, gains, _ = ranked
    assert sorted(g.node for g in gains) == sorted(nodes) and len(nodes) == 2
    assert [g.gain for g in gains] == sorted((g.gain for g in gains), reverse=True)
    base = {round(g.kl + g.gain, 12) for g in gains}
    assert len(base) == 1 and base.pop() > 0  # INT8 is not FP32
    s = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    ref = np.concatenate([s.run(["logits"], f)[0] for f in feeds])
    top = _variant(without, nodes, gains[0].node, tmp_path)
    ops = [n.op_type for n in onnx.load(top).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 1 and ops.count("DynamicQuantizeLinear") >= 1
    assert _ort_kl(top, ref, feeds) == pytest.approx(gains[0].kl, rel=1e-3, abs=1e-9)
    everything = _variant(without, nodes, None, tmp_path)
    assert _ort_kl(everything, ref, feeds) == pytest.approx(gains[0].kl + gains[0].gain, rel=1e-3)


def test_ranking_is_cached_by_content_of_the_feeds(ranked, feeds):
    from workbench.backends.onnxruntime.token_ranking import ffn_down_ranking

    fp32, without, nodes, gains, folder = ranked
    cached = sorted(folder.glob("*.ranking.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())) == len(nodes)
    assert ffn_down_ranking(fp32, without, nodes, lambda: iter(feeds), folder) == gains
    assert len(list(folder.glob("*.ranking.json"))) == 1  # the same key: reused
    fewer = feeds[:2]
    again = ffn_down_ranking(fp32, without, nodes, lambda: iter(fewer), folder)
    assert len(list(folder.glob("*.ranking.json"))) == 2 and len(again) == len(nodes)
    with pytest.raises(CalibrationError, match="calibration rows"):
        ffn_down_ranking(fp32, without, nodes, lambda: iter([]), folder)


def test_worst_k_build_is_the_searchs_candidate(tiny_model, tiny_onnx, feeds, tmp_path):
    """Through the registry: per-token at exactly the top-ranked narrowing MatMul (when it
    helps), the detail names it, and the bytes equal the search's candidate."""
    from workbench.backends.registry import get_backend
    from workbench.experiment.search_builds import CandidateBuilder
    from workbench.experiment.search_core import DYNAMIC, Candidate
    from workbench.fileio import sha256_file

    req = _req(tiny_model, tiny_onnx, tmp_path / "b", PAIR)
    art = get_backend("onnxruntime").build(req, lambda: iter(feeds))
    m = onnx.load(art.model_path)
    per_token = [n.name for n in m.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert "SmoothQuant α 0.8" in art.detail and "the 1 most helped" in art.detail
    # the ranking the build used is in its cache folder: its top layer is the one made per-token
    (cache,) = (tmp_path / "b" / "recovery").glob("*.ranking.json")
    gains = json.loads(cache.read_text())
    expect = [gains[0]["node"]] if gains[0]["gain"] > 0 else []
    assert per_token == expect
    assert (f"{len(expect)} narrowing feed-forward (of 2, the 1 most helped") in art.detail
    builder = CandidateBuilder(
        str(tiny_onnx), {}, tmp_path / "s", str(tiny_model.path), lambda: iter(feeds)
    )
    path = builder.build(Candidate(DYNAMIC, True, (), "dynamic", "fused", PAIR))
    assert sha256_file(path) == sha256_file(art.model_path)


@pytest.mark.parametrize(
    ("k", "gains", "chosen"),
    [
        (1, (2e-6, 1e-6), [1]),  # the largest gain
        (5, (2e-6, 1e-6), [0, 1]),  # K beyond the layers: every one that helps, graph order
        (5, (2e-6, -1e-6), [1]),  # a layer it does not help is never taken
        (2, (-1e-6, 0.0), []),  # none helps: plain dynamic INT8
    ],
)
def test_worst_k_takes_the_k_layers_it_helps_most(
    tiny_model, tiny_onnx, feeds, tmp_path, monkeypatch, k, gains, chosen
):
    """The selection rule, on a ranking given here (layer 1's gain first): the top K of the
    ranking with a positive gain, per-token in graph order; the detail says how many."""
    import workbench.backends.onnxruntime.token_ranking as tr
    from workbench.backends.registry import get_backend

    def ranking(fp32, quantized, nodes, calibration, folder):
        assert len(list(calibration())) == len(feeds)  # it reads the calibration set
        layer = dict(zip((1, 0), gains, strict=True))
        out = [tr.LayerGain(n, 1e-5 - layer[i], layer[i]) for i, n in enumerate(nodes)]
        return sorted(out, key=lambda g: -g.gain)

    monkeypatch.setattr(tr, "ffn_down_ranking", ranking)
    req = _req(tiny_model, tiny_onnx, tmp_path, (f"per-token-ffn-down-worst-{k}",))
    art = get_backend("onnxruntime").build(req, lambda: iter(feeds))
    m = onnx.load(art.model_path)
    per_token = [n.name for n in m.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert per_token == [f"/inner/encoder/encoder/layer.{i}/output/dense/MatMul" for i in chosen]
    assert f"{len(chosen)} narrowing feed-forward (of 2, the {k} most helped" in art.detail
    assert ("none helps" in art.detail) == (not chosen)
    assert "kept in float" not in art.detail


def test_worst_k_needs_calibration_and_a_valid_k(tiny_model, tiny_onnx, tmp_path):
    from workbench.backends.onnxruntime.recovery import needs_calibration
    from workbench.backends.registry import get_backend
    from workbench.experiment.search_builds import available_recoveries

    req = _req(tiny_model, tiny_onnx, tmp_path, ("per-token-ffn-down-worst-2",))
    with pytest.raises(CalibrationError, match="calibration set"):
        get_backend("onnxruntime").build(req, None)
    assert needs_calibration(("per-token-ffn-down-worst-2",))
    exp = _load(
        tmp_path,
        'backend = "onnxruntime"\nprecision = "int8-dynamic"\n'
        'recovery = ["smoothquant-0.8", "per-token-ffn-down-worst-2"]',
    )
    assert exp.builds[0].recovery == ("smoothquant-0.8", "per-token-ffn-down-worst-2")
    # refusals (K 0, not a number, two per-token options): test_recovery_build's table
    offered = available_recoveries("dynamic")
    for k in (1, 2, 3):
        assert ("smoothquant-0.8", f"per-token-ffn-down-worst-{k}") in offered
        assert (f"per-token-ffn-down-worst-{k}",) in offered
    assert not any("worst-1" in " ".join(r) for r in available_recoveries("static"))
