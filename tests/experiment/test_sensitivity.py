"""Per-layer sensitivity on a tiny BERT with a planted bad layer (real ORT sessions)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tests.experiment.conftest import PLANTED_NODE
from workbench.errors import DataError


@pytest.fixture(scope="module")
def table(planted):
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.table import calibrate

    return calibrate(planted.onnx_path, planted.calib, "max", open_runner=open_ort_runner)


@pytest.fixture(scope="module")
def result(planted, table):
    from workbench.evaluate.sensitivity import SensitivitySpec, layer_sensitivity

    calls = []
    res = layer_sensitivity(
        planted.onnx_path,
        table,
        planted.search,
        planted.search_labels,
        SensitivitySpec(proxy_samples=32),
        progress=lambda done, total: calls.append((done, total)),
    )
    return res, calls


def test_module_paths_and_macs(tiny_onnx) -> None:
    from workbench.evaluate.sensitivity import module_path, node_groups

    groups = {g.module_path: g for g in node_groups(tiny_onnx, seq_len=128)}
    assert module_path("/inner/encoder/encoder/layer.3/intermediate/dense/MatMul") == (
        "encoder.layer.3.intermediate.dense"
    )
    g = groups["encoder.layer.1.intermediate.dense"]
    assert (g.layer, g.sublayer, g.op_type) == (1, "intermediate.dense", "MatMul")
    assert g.macs == 128 * 32 * 64  # seq x hidden x intermediate (tiny BERT: 32 -> 64)
    scores = groups["encoder.layer.0.attention.self"]  # Q @ K^T: heads x seq x seq x head_dim
    assert scores.macs == 2 * 128 * 128 * 16
    assert groups["head"].layer == -1 and groups["head"].macs == 32 * 2
    assert len(groups) == 17


def test_planted_layer_ranked_first_and_proxy_flags_it(result) -> None:
    res, calls = result
    assert res.ranking[0] == PLANTED_NODE
    bad = res.layer(PLANTED_NODE)
    others = [e for e in res.layers if e.group.onnx_node != PLANTED_NODE]
    assert bad.only_this.kl_mean > 5 * max(e.only_this.kl_mean for e in others)
    assert bad.sqnr_db == min(e.sqnr_db for e in res.layers) and bad.sqnr_db < 10
    # leaving only the planted layer float recovers most of the all-INT8 damage
    assert bad.all_but_this.kl_mean < 0.2 * res.all_quantized.kl_mean
    assert calls[-1] == (17, 17) and all(a[0] < b[0] for a, b in itertools.pairwise(calls))
    assert math.isfinite(res.spearman_sqnr) and -1 <= res.spearman_sqnr <= 1


def test_ranking_deterministic_without_cache(planted, table, result) -> None:
    from workbench.evaluate.sensitivity import SensitivitySpec, layer_sensitivity

    again = layer_sensitivity(
        planted.onnx_path,
        table,
        planted.search,
        planted.search_labels,
        SensitivitySpec(proxy_samples=32, use_cache=False),
    )
    assert again.ranking == result[0].ranking
    np.testing.assert_allclose(
        [e.only_this.kl_mean for e in again.layers],
        [e.only_this.kl_mean for e in result[0].layers],
        rtol=1e-6,
    )


def test_json_round_trip_and_cache_resume(planted, table, result, tmp_path) -> None:
    from workbench.evaluate.sensitivity import (
        RESULT_FILE,
        SensitivityResult,
        SensitivitySpec,
        _cache_dir,
        layer_sensitivity,
    )

    res = result[0]
    assert SensitivityResult.load(res.save(tmp_path / "s.json")) == res
    spec = SensitivitySpec(proxy_samples=32)
    cdir = _cache_dir(planted.onnx_path, table, planted.search, planted.search_labels, spec)
    assert (cdir / RESULT_FILE).is_file() and len(list(cdir.glob("layer-*.json"))) == 17
    (cdir / RESULT_FILE).unlink()
    (cdir / "layer-016.json").unlink()  # an interrupted run: the last layer is missing
    resumed = layer_sensitivity(
        planted.onnx_path, table, planted.search, planted.search_labels, spec
    )
    assert resumed.ranking == res.ranking and (cdir / "layer-016.json").is_file()


def test_proxy_matches_ort_quantized_output(planted, table) -> None:
    """NumPy fake-quant SQNR of one layer vs the same layer's output in a real ORT Q/DQ model."""
    import onnxruntime as ort
    from onnx import helper

    from workbench.calibration.graph import load_onnx
    from workbench.calibration.methods import sqnr_db
    from workbench.calibration.qdq import write_qdq_model
    from workbench.evaluate.sensitivity import (
        SensitivitySpec,
        exclude_all_but,
        layer_proxies,
        node_groups,
    )

    groups = node_groups(planted.onnx_path)
    node = "/inner/encoder/encoder/layer.0/intermediate/dense/MatMul"
    proxy = layer_proxies(
        planted.onnx_path, table, planted.search, groups, SensitivitySpec(proxy_samples=96)
    )
    q = write_qdq_model(
        planted.onnx_path,
        table,
        planted.onnx_path.parent / "only.onnx",
        per_channel=True,
        exclude=exclude_all_but(groups, node),
    )
    out = f"{node}_output_0"

    def run(path):
        m = load_onnx(path)
        m.graph.output.append(helper.make_empty_tensor_value_info(out))
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run([out], f)[0].reshape(-1) for f in planted.search])

    ref, got = run(planted.onnx_path).astype(np.float64), run(q).astype(np.float64)
    ort_sqnr = sqnr_db(float(ref @ ref), float((ref - got) @ (ref - got)))
    assert proxy[node][0] == pytest.approx(ort_sqnr, abs=1.0)


def test_bad_split_rejected_before_work(planted, table) -> None:
    from workbench.evaluate.sensitivity import layer_sensitivity

    with pytest.raises(DataError, match="one label per sample"):
        layer_sensitivity(planted.onnx_path, table, planted.search, planted.search_labels[:-1])


def test_proxy_ranking_puts_planted_layer_first_without_builds(planted, table) -> None:
    from workbench.evaluate.sensitivity import SensitivitySpec, node_groups, proxy_ranking

    order = proxy_ranking(
        planted.onnx_path, table, planted.search, SensitivitySpec(proxy_samples=32)
    )
    assert order[0] == PLANTED_NODE
    assert sorted(order) == sorted(g.onnx_node for g in node_groups(planted.onnx_path))
