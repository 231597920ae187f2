"""benchmarks/peers.py's set-up for real on a tiny BERT: ORT quantize_static fed the same rows
in chunks, with the workbench's placement (MatMul/Gemm inputs only, per-channel weights)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (extra: torch)")

from benchmarks.peers import COUNTERPART, modelopt_missing, ort_static, placement, ties


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from tests.calibration.conftest import random_texts
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    texts = random_texts(40, seed=12)  # 40 rows: three ORT collect_data chunks (16, 16, 8)
    return [tok.encode(texts[i : i + 16], pad_to=64) for i in range(0, 40, 16)]


@pytest.mark.parametrize("method", ["max"])  # entropy: same set-up, ~25 s of ORT histograms
def test_ort_peer_quantizes_what_the_workbench_quantizes(tiny_onnx, feeds, tmp_path, method):
    import onnx

    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate

    out = tmp_path / f"ort-{method}.onnx"
    ort_static(str(tiny_onnx), feeds, str(out), method)
    ours = write_qdq_model(
        tiny_onnx,
        calibrate(tiny_onnx, feeds, method, open_runner=open_ort_runner),
        tmp_path / "wb.onnx",
        True,
    )
    assert placement(str(out)) == placement(str(ours))
    g = onnx.load(str(out)).graph
    producers = {o: n for n in g.node for o in n.output}
    matmul_outputs = {n.output[0] for n in g.node if n.op_type in ("MatMul", "Gemm")}
    assert not [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in matmul_outputs]
    weight_dq = [
        n
        for n in g.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] not in producers
        and "quantized" in n.input[0]
    ]
    assert weight_dq and all(
        np.asarray(
            onnx.numpy_helper.to_array(next(i for i in g.initializer if i.name == n.input[1]))
        ).ndim
        == 1
        for n in weight_dq
    )


def test_ties_are_said_as_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    wb = labels.copy()
    wb[:40] = 1 - wb[:40]  # 90 %
    peer_tie = wb.copy()
    peer_tie[100] = 1 - peer_tie[100]  # one row apart
    peer_worse = wb.copy()
    peer_worse[100:200] = 1 - peer_worse[100:200]  # 65 %
    rows = {
        n: {"agreement": 1.0}
        for n in ("workbench-max-pc", "ort-minmax", "ort-entropy2048", "workbench-entropy-pc")
    }
    preds = {
        "workbench-max-pc": wb,
        "ort-minmax": peer_tie,
        "workbench-entropy-pc": wb,
        "ort-entropy2048": peer_worse,
    }
    v = ties(rows, preds, labels)
    assert v["ort-minmax"]["verdict"] == "tie"
    assert v["ort-entropy2048"]["verdict"] == "workbench ahead"
    assert set(v) <= set(COUNTERPART)


def test_modelopt_absence_is_explained(tmp_path):
    import importlib.util
    import sys

    assert "nvidia-modelopt[onnx]" in modelopt_missing(None)
    if importlib.util.find_spec("modelopt") is not None:
        pytest.skip("modelopt is installed in this environment")
    assert "nvidia-modelopt[onnx]" in modelopt_missing(sys.executable)  # not in the test venv
