"""``[[build]] graph = "fused"``: FP32, static and dynamic INT8 on the fused BERT graph through
the backend registry and real ONNX Runtime sessions; spec errors; pre-flight refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.calibration.conftest import random_texts
from workbench.errors import ConfigError


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=70 + s)) for s in range(3)]  # padded batches


@pytest.fixture(scope="module")
def table_file(tiny_onnx, feeds, tmp_path_factory) -> str:
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.table import calibrate

    out = tmp_path_factory.mktemp("table") / "max.json"
    return str(calibrate(tiny_onnx, feeds[:2], "max", open_runner=open_ort_runner).save(out))


def _request(tiny_model, tiny_onnx, table_file, precision: str, graph: str, cache: Path):
    from workbench.backends.registry import BuildRequest

    return BuildRequest(
        name=f"ort-{precision}-{graph}", backend="onnxruntime", device="cpu",
        precision=precision, compile=False, cuda_graphs=False, fp32_onnx=str(tiny_onnx),
        torch_model=str(tiny_model.path), tokenizer_file="", max_length=tiny_model.max_length,
        table_file=table_file, method="max", calibrator="workbench", per_channel=True,
        exclude=(), cache_dir=str(cache), graph=graph,
    )  # fmt: skip


def _built(req, feeds):
    """(artifact, logits of every feed, INT8 audit) through the registry's backend."""
    from workbench.backends.registry import get_backend

    backend = get_backend("onnxruntime")
    art = backend.build(req, None)
    with backend.open_runner(req, art, threads=1) as r:
        logits = np.concatenate([r.infer(f)["logits"] for f in feeds])
    return art, logits, backend.int8_audit(req, art)


def test_fused_fp32_equals_plain_per_sample(tiny_model, tiny_onnx, table_file, feeds, tmp_path):
    import onnx

    plain, lp, _ = _built(_request(tiny_model, tiny_onnx, "", "fp32", "plain", tmp_path), feeds)
    fused, lf, _ = _built(_request(tiny_model, tiny_onnx, "", "fp32", "fused", tmp_path), feeds)
    assert fused.model_path != plain.model_path and "fused graph" in fused.detail
    ops = {n.op_type for n in onnx.load(fused.model_path).graph.node}
    assert {"MultiHeadAttention", "LayerNormalization"} <= ops and "Softmax" not in ops
    assert "SkipLayerNormalization" not in ops  # slower on ORT's CPU than Add + LayerNorm
    np.testing.assert_allclose(lf, lp, atol=1e-4)
    assert (lf.argmax(1) == lp.argmax(1)).all()


@pytest.mark.parametrize("precision", ["int8-static", "int8-dynamic"])
def test_fused_int8_runs_and_reports_coverage(
    tiny_model, tiny_onnx, table_file, feeds, tmp_path, precision
):
    req = _request(tiny_model, tiny_onnx, table_file, precision, "fused", tmp_path)
    art, logits, cov = _built(req, feeds)
    _, ref, _ = _built(_request(tiny_model, tiny_onnx, "", "fp32", "plain", tmp_path), feeds)
    assert "fused graph" in art.detail
    assert cov is not None and cov.quantized_matmul >= 12  # q, k, v, out, ffn x2 per layer
    # attention stays fused; dynamic INT8 packs Q/K/V into one QAttention per layer
    fused_op = "QAttention" if precision == "int8-dynamic" else "MultiHeadAttention"
    assert _ops(art.model_path).count(fused_op) == 2
    cos = np.sum(logits * ref, 1) / np.linalg.norm(logits, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9


def test_static_fused_table_maps_every_matmul_input(tiny_onnx, table_file, tmp_path):
    """Each fused-graph MatMul activation gets the range of the same MatMul in the plain graph;
    the renamed embedding output (EmbedLayerNormalization) included."""
    from workbench.backends.onnxruntime.fused_graph import mapped_table
    from workbench.backends.onnxruntime.fusion import fuse_bert
    from workbench.calibration.graph import quantizable_tensors
    from workbench.calibration.table import CalibrationTable

    fused = fuse_bert(tiny_onnx, tmp_path / "f.onnx", num_heads=2).path
    table = CalibrationTable.load(mapped_table(tiny_onnx, fused, table_file, str(tmp_path)))
    plain = CalibrationTable.load(table_file)
    wanted = quantizable_tensors(fused)
    assert set(table.amax) == set(wanted)
    assert any(n not in plain.amax for n in wanted)  # fusion renamed at least one tensor
    assert set(table.amax.values()) <= set(plain.amax.values())


def _ops(path: str) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(path).graph.node]


def _exp_text(model: str, graph: str = "fused", backend: str = "onnxruntime") -> str:
    return (
        f'{model}\n[data]\nfile = "d.csv"\n'
        f'[[build]]\nbackend = "onnxruntime"\n[[build]]\nbackend = "{backend}"\n'
        f'precision = "int8-dynamic"\ngraph = "{graph}"\n'
        '[gate]\nbaseline = "ort-fp32"\n'
    )


def test_spec_graph_key_names_did_you_mean_and_default_name(tmp_path):
    from workbench.experiment.spec import load_experiment

    (tmp_path / "d.csv").write_text("text,label\ngood,1\nbad,0\n")
    exp_file = tmp_path / "e.toml"
    exp_file.write_text(_exp_text("[model]\ndefault = true", graph="fused"))
    exp = load_experiment(exp_file)
    assert [b.name for b in exp.builds] == ["ort-fp32", "ort-int8-dynamic-fused"]
    assert exp.builds[0].graph == "plain"
    exp_file.write_text(_exp_text("[model]\ndefault = true", graph="fsued"))
    with pytest.raises(ConfigError, match="did you mean 'fused'"):
        load_experiment(exp_file)
    exp_file.write_text(_exp_text("[model]\ndefault = true").replace('"int8-dynamic"', '"fp32"')
                        .replace('backend = "onnxruntime"\nprecision', 'backend = "pytorch"\n'
                                 'precision'))  # fmt: skip
    with pytest.raises(ConfigError, match="applies to backend = onnxruntime on cpu"):
        load_experiment(exp_file)


def test_unsupported_family_refused_at_preflight_exit_2(tmp_path, capsys):
    """A DistilBERT folder: one line naming the family and why, exit 2, nothing written (the
    refusal needs only config.json, so it comes before data, model or any file)."""
    from workbench.cli import main

    model = tmp_path / "distil"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "distilbert", "n_heads": 2}')
    (tmp_path / "d.csv").write_text("text,label\ngood,1\nbad,0\n")
    exp = tmp_path / "e.toml"
    exp.write_text(_exp_text(f'[model]\npath = "{model}"'))
    reports, calib = tmp_path / "r", tmp_path / "c"
    reports.mkdir()
    calib.mkdir()
    args = ["--reports", str(reports), "--calibration-sets", str(calib), "--no-progress"]
    code = main(["run", str(exp), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "not supported for distilbert" in err and "ort-int8-dynamic-fused" in err
    assert not any(reports.iterdir()) and not any(calib.iterdir())


def test_dynamic_int8_keeps_the_named_nodes_float(tiny_model, tiny_onnx, table_file, tmp_path):
    """The search's float nodes and the experiment's exclude reach ORT's dynamic quantizer."""
    import dataclasses

    from workbench.backends.registry import get_backend
    from workbench.calibration.qdq import excluded_nodes

    req = _request(tiny_model, tiny_onnx, table_file, "int8-dynamic", "fused", tmp_path)
    node = "/inner/encoder/encoder/layer.1/output/dense/MatMul"
    req = dataclasses.replace(req, exclude=(f"^{node}$",))
    assert excluded_nodes(tiny_onnx, req.exclude) == [node]
    art = get_backend("onnxruntime").build(req, None)
    import onnx

    by_name = {n.name: n.op_type for n in onnx.load(art.model_path).graph.node}
    assert by_name.get(node) == "MatMul"  # kept float
    assert sum(op == "MatMulInteger" or op == "DynamicQuantizeMatMul" for op in by_name.values())
    assert "kept in float" in art.detail
