"""``[[build]] recovery = [...]``: dynamic INT8 with SmoothQuant and per-token FFN activations,
built through the backend registry exactly as the search builds its candidate; spec checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.backends.test_fused_builds import _built, _request
from tests.calibration.conftest import random_texts
from workbench.errors import CalibrationError, ConfigError

BOTH = ("smoothquant-0.8", "per-token-ffn")


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=110 + s)) for s in range(3)]  # padded batches


def _req(tiny_model, tiny_onnx, tmp_path, recovery, graph="fused"):
    from dataclasses import replace

    req = _request(tiny_model, tiny_onnx, "", "int8-dynamic", graph, tmp_path)
    return replace(req, recovery=recovery)


def test_recovered_build_is_the_searchs_candidate(tiny_model, tiny_onnx, feeds, tmp_path):
    """Same bytes as the search's CandidateBuilder makes for the same candidate, so an
    exclude.toml's [[build]] table rebuilds the search's choice; FFN MatMuls per token,
    Q/K/V in QAttention, SmoothQuant in the detail."""
    from workbench.backends.registry import get_backend
    from workbench.experiment.search_builds import CandidateBuilder
    from workbench.experiment.search_core import DYNAMIC, Candidate
    from workbench.fileio import sha256_file

    req = _req(tiny_model, tiny_onnx, tmp_path / "b", BOTH)
    art = get_backend("onnxruntime").build(req, lambda: iter(feeds))
    assert "SmoothQuant α 0.8" in art.detail and "per-token activations" in art.detail
    ops = [n.op_type for n in onnx.load(art.model_path).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 2 * 2  # FFN up and down, 2 layers
    assert ops.count("QAttention") == 2
    builder = CandidateBuilder(
        str(tiny_onnx), {}, tmp_path / "s", str(tiny_model.path), lambda: iter(feeds)
    )
    path = builder.build(Candidate(DYNAMIC, True, (), "dynamic", "fused", BOTH))
    assert sha256_file(path) == sha256_file(art.model_path)
    backend = get_backend("onnxruntime")
    with backend.open_runner(req, backend.build(req, lambda: iter(feeds)), threads=1) as r:
        logits = np.concatenate([r.infer(f)["logits"] for f in feeds])
    _, ref, _ = _built(_request(tiny_model, tiny_onnx, "", "fp32", "plain", tmp_path), feeds)
    agree = (logits.argmax(1) == ref.argmax(1)).mean()
    assert agree > 0.9 and not np.allclose(logits, ref, atol=1e-6)
    plain = _req(tiny_model, tiny_onnx, tmp_path / "p", ("per-token-ffn",), graph="plain")
    art = get_backend("onnxruntime").build(plain, None)  # no SmoothQuant: no calibration needed
    assert "SmoothQuant" not in art.detail and "per-token" in art.detail


def test_per_token_ffn_down_is_the_searchs_candidate(tiny_model, tiny_onnx, feeds, tmp_path):
    """``per-token-ffn-down``: only the narrowing FFN MatMul of each layer per token (the one
    that reads the GELU output), the widening one ORT's per-tensor op; same bytes as the
    search's candidate; it agrees with FP32 at least as well as all-per-tensor dynamic."""
    from workbench.backends.registry import get_backend
    from workbench.experiment.search_builds import CandidateBuilder
    from workbench.experiment.search_core import DYNAMIC, Candidate
    from workbench.fileio import sha256_file

    pair = ("smoothquant-0.8", "per-token-ffn-down")
    req = _req(tiny_model, tiny_onnx, tmp_path / "b", pair)
    art = get_backend("onnxruntime").build(req, lambda: iter(feeds))
    assert "2 narrowing feed-forward MatMuls with per-token activations" in art.detail
    assert "kept in float" not in art.detail  # per-token INT8 is not float
    m = onnx.load(art.model_path)
    per_token = [n.name for n in m.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(per_token) == 2 and all("/output/dense/" in n for n in per_token)
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    inputs = {n.name: n.input[0] for n in m.graph.node if n.name.endswith("_tok_max")}
    assert sorted(producers[x] for x in inputs.values()) == ["BiasGelu", "BiasGelu"]
    builder = CandidateBuilder(
        str(tiny_onnx), {}, tmp_path / "s", str(tiny_model.path),
        lambda: iter(feeds),
    )  # fmt: skip
    path = builder.build(Candidate(DYNAMIC, True, (), "dynamic", "fused", pair))
    assert sha256_file(path) == sha256_file(art.model_path)
    backend = get_backend("onnxruntime")

    def logits(r):
        with backend.open_runner(r, backend.build(r, lambda: iter(feeds)), threads=1) as run:
            return np.concatenate([run.infer(f)["logits"] for f in feeds])

    _, ref, _ = _built(_request(tiny_model, tiny_onnx, "", "fp32", "plain", tmp_path), feeds)
    got = logits(req)
    plain_dyn = logits(_req(tiny_model, tiny_onnx, tmp_path / "d", ()))
    err = np.abs(got - ref).mean()
    assert 0 < err <= np.abs(plain_dyn - ref).mean() * 1.5
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.9


def test_smoothquant_without_calibration_is_refused(tiny_model, tiny_onnx, tmp_path):
    from workbench.backends.registry import get_backend

    req = _req(tiny_model, tiny_onnx, tmp_path, ("smoothquant-0.8",))
    with pytest.raises(CalibrationError, match="calibration set"):
        get_backend("onnxruntime").build(req, None)


def _load(tmp_path, build: str):
    from workbench.experiment.spec import load_experiment

    (tmp_path / "d.csv").write_text("text,label\ngood,1\nbad,0\n")
    f = tmp_path / "e.toml"
    f.write_text(f'[model]\ndefault = true\n[data]\nfile = "d.csv"\n[[build]]\n{build}\n')
    return load_experiment(f)


def test_spec_names_and_checks_recovery(tmp_path):
    exp = _load(
        tmp_path,
        'backend = "onnxruntime"\nprecision = "int8-dynamic"\ngraph = "fused"\n'
        'recovery = ["smoothquant-0.8", "per-token-ffn"]',
    )
    b = exp.builds[0]
    assert b.recovery == BOTH
    assert b.name == "ort-int8-dynamic-fused-smoothquant-0.8-per-token-ffn"
    bad = {
        '"smoothquant-0.8", "per-token-fnn"': "'per-token-fnn' unknown",
        '"smoothquant-0.5", "smoothquant-0.8"': "at most one smoothquant",
        '"smoothquant-1.5"': "'smoothquant-1.5' unknown",
        '"per-token-ffn", "per-token-ffn-down"': "one of",
        '"per-token-ffn-down-worst-0"': "'per-token-ffn-down-worst-0' unknown",
        '"per-token-ffn-down-worst-x"': "'per-token-ffn-down-worst-x' unknown",
        '"per-token-ffn-down", "per-token-ffn-down-worst-1"': "one of",
    }
    for names, msg in bad.items():
        with pytest.raises(ConfigError, match=msg):
            _load(
                tmp_path,
                f'backend = "onnxruntime"\nprecision = "int8-dynamic"\nrecovery = [{names}]',
            )
    with pytest.raises(ConfigError, match="precision = 'int8-dynamic'"):
        _load(
            tmp_path,
            'backend = "onnxruntime"\nprecision = "int8-static"\nrecovery = ["per-token-ffn"]',
        )
