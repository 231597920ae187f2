"""benchmarks/int8_two_backends.py's core, for real on a tiny BERT: a real table, a real Q/DQ
model in a real ONNX Runtime session, QuantLinear's float64 reference in torch."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (extra: torch)")

from benchmarks.int8_two_backends import (
    VARIANTS,
    TwoBackendSpec,
    agreement_matrix,
    attention_matmuls,
    two_backend_logits,
)


@pytest.fixture(scope="module")
def spec_and_texts(tiny_model, tiny_onnx, tmp_path_factory):
    from tests.calibration.conftest import random_texts
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.table import calibrate
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    calib = random_texts(64, seed=11)
    table = calibrate(
        tiny_onnx,
        (tok.encode(calib[i : i + 16]) for i in range(0, 64, 16)),
        "max",
        open_runner=open_ort_runner,
    )
    out = tmp_path_factory.mktemp("two-backends")
    spec = TwoBackendSpec(
        torch_model=str(tiny_model.path),
        fp32_onnx=str(tiny_onnx),
        table_file=str(table.save(out / "max.json")),
        tokenizer_file=str(tok.path),
        max_length=tiny_model.max_length,
        cache_dir=str(out / "builds"),
        threads=1,
    )
    return spec, random_texts(96, seed=12)


def test_attention_matmuls_are_the_activation_only_ones(tiny_onnx):
    names = attention_matmuls(tiny_onnx)
    # 2 layers x (Q.K^T, P.V); no Linear (query/key/value/dense/head) among them
    assert len(names) == 4
    assert all("attention/self/MatMul" in n for n in names)


def test_agreement_matrix_of_the_two_backends(spec_and_texts):
    spec, texts = spec_and_texts
    logits, seconds = two_backend_logits(spec, texts)
    assert list(logits) == list(VARIANTS) and all(s > 0 for s in seconds.values())
    assert all(v.shape == (len(texts), 2) and np.isfinite(v).all() for v in logits.values())
    mat = agreement_matrix(logits)
    agree, dl = mat["agreement"], mat["mean_abs_dlogit"]
    for a in VARIANTS:
        assert agree[a][a] == 1.0 and dl[a][a] == 0.0
        for b in VARIANTS:
            assert agree[a][b] == agree[b][a] and 0.0 <= agree[a][b] <= 1.0
    # the same INT8 arithmetic in two implementations: ORT's integer kernels vs float64
    assert agree["ort-qdq-linears"]["ql-fp32"] >= 0.98
    assert dl["ort-qdq-linears"]["ql-fp32"] < 0.1 * dl["ql-fp32"]["torch-fp32"]
    # INT8 really happened (differs from FP32), and FP16 alone is close to FP32
    assert dl["ql-fp32"]["torch-fp32"] > 0
    assert dl["torch-fp16"]["torch-fp32"] < dl["ql-fp32"]["torch-fp32"]
