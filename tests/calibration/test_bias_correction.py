"""Empirical bias correction: the corrected layers' mean output error drops on held-out text."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.calibration.conftest import random_texts
from tests.calibration.recovery_helpers import agreement, feeds_of, logits, session
from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.bias_correction import bias_correct
from workbench.calibration.qdq import write_qdq_model
from workbench.calibration.table import calibrate
from workbench.errors import ConfigError


@pytest.fixture(scope="module")
def calib_feeds(tiny_tokenizer):
    return feeds_of(tiny_tokenizer, random_texts(64, seed=3))


@pytest.fixture(scope="module")
def test_feeds(tiny_tokenizer):
    return feeds_of(tiny_tokenizer, random_texts(256, seed=4), batch=32)


@pytest.fixture(scope="module")
def qdq(tiny_onnx, calib_feeds, tmp_path_factory):
    table = calibrate(
        tiny_onnx, calib_feeds, "percentile-99.9", open_runner=open_ort_runner
    )  # clipping shifts the means
    return write_qdq_model(tiny_onnx, table, tmp_path_factory.mktemp("bc") / "q.onnx", False)


def _bias_outputs(qdq_path) -> list[str]:
    """Oracle's own reading of which tensors are corrected: outputs of bias Adds after a
    quantized MatMul, and of quantized Gemms."""
    g = onnx.load(str(qdq_path)).graph
    prod = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    out = []
    for n in g.node:
        if (
            n.op_type == "Add"
            and set(n.input) & inits
            and any(
                i in prod
                and prod[i].op_type == "MatMul"
                and any(
                    prod.get(j) is not None and prod[j].op_type == "DequantizeLinear"
                    for j in prod[i].input
                )
                for i in n.input
            )
        ):
            out.append(n.output[0])
        if n.op_type == "Gemm" and len(n.input) > 2:
            out.append(n.output[0])
    return out


def _mean_errors(model, fp32, names, feeds, tmp_path) -> dict[str, float]:
    """NumPy oracle: mean over channels of |E[y_q] − E[y_fp]| at real tokens."""

    def tapped(path, tag):
        m = onnx.load(str(path))
        for n in names:
            m.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
        onnx.save(m, str(tmp_path / f"{tag}.onnx"))
        return session(tmp_path / f"{tag}.onnx")

    sq, sf = tapped(model, "q"), tapped(fp32, "f")
    diff = {n: [] for n in names}
    for f in feeds:
        oq, of = sq.run(names, f), sf.run(names, f)
        m = f["attention_mask"].astype(bool)
        for n, a, b in zip(names, oq, of, strict=True):
            d = (a - b)[m] if a.ndim == 3 else (a - b)
            diff[n].append(d.reshape(-1, a.shape[-1]))
    return {n: float(np.abs(np.concatenate(v).mean(axis=0)).mean()) for n, v in diff.items()}


@pytest.mark.parametrize("sequential", [True, False])
def test_bias_correction_reduces_mean_error(
    tiny_onnx, qdq, calib_feeds, test_feeds, tmp_path, sequential
):
    out = bias_correct(
        qdq,
        tiny_onnx,
        calib_feeds,
        tmp_path / "bc.onnx",
        sequential=sequential,
        open_runner=open_ort_runner,
    )
    names = _bias_outputs(qdq)
    assert len(names) == 13  # 6 biased MatMuls per layer x 2 + the head Gemm
    before = _mean_errors(qdq, tiny_onnx, names, test_feeds, tmp_path)
    after = _mean_errors(out, tiny_onnx, names, test_feeds, tmp_path)
    assert sum(after.values()) < 0.7 * sum(before.values()), (before, after)
    assert sum(after[n] < before[n] for n in names) >= len(names) // 2 + 1
    ref, got = logits(tiny_onnx, test_feeds), logits(out, test_feeds)
    assert np.isfinite(got).all() and got.shape == ref.shape
    assert agreement(got, ref) >= agreement(logits(qdq, test_feeds), ref) - 0.02


def test_layer_by_layer_runs_in_rounds_by_depth(tiny_onnx, qdq, calib_feeds, tmp_path):
    """Sequential correction measures later layers after earlier ones are corrected, so its
    biases differ from the one-shot ones beyond the first round (Q/K/V of block 0)."""
    from onnx import numpy_helper

    def biases(path):
        g = onnx.load(str(path)).graph
        return {
            i.name: numpy_helper.to_array(i) for i in g.initializer if "bias_corrected" in i.name
        }

    seq = biases(
        bias_correct(qdq, tiny_onnx, calib_feeds, tmp_path / "s.onnx", open_runner=open_ort_runner)
    )
    one = biases(
        bias_correct(
            qdq,
            tiny_onnx,
            calib_feeds,
            tmp_path / "o.onnx",
            sequential=False,
            open_runner=open_ort_runner,
        )
    )
    assert seq.keys() == one.keys() and len(seq) == 13
    first = [n for n in seq if "layer.0/attention/self/" in n]
    assert len(first) == 3
    for n in first:
        np.testing.assert_allclose(seq[n], one[n], rtol=1e-6, atol=1e-9)
    later = [n for n in seq if n not in first]
    assert (
        sum(not np.allclose(seq[n], one[n], rtol=1e-4, atol=1e-7) for n in later) >= len(later) // 2
    )


def test_bias_correction_refuses_a_float_model(tiny_onnx, calib_feeds, tmp_path):
    with pytest.raises(ConfigError, match="no quantized"):
        bias_correct(
            tiny_onnx, tiny_onnx, calib_feeds, tmp_path / "x.onnx", open_runner=open_ort_runner
        )
    assert not (tmp_path / "x.onnx").exists()


def test_refusal_names_a_model_without_biases(tiny_onnx, tmp_path):
    """The search asks first: a BERT graph has biased layers; strip every bias and it has none."""
    from workbench.calibration.bias_correction import refusal

    assert refusal(tiny_onnx) is None
    model = onnx.load(str(tiny_onnx))
    inits = {i.name for i in model.graph.initializer}
    matmuls = {n.output[0] for n in model.graph.node if n.op_type == "MatMul"}
    keep = []
    for n in model.graph.node:  # MatMul -> Add(bias) becomes MatMul -> Identity
        if n.op_type == "Add" and set(n.input) & matmuls and set(n.input) & inits:
            src = next(i for i in n.input if i in matmuls)
            n = helper.make_node("Identity", [src], list(n.output), name=n.name)
        elif n.op_type == "Gemm" and len(n.input) > 2:
            del n.input[2]
        keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    stripped = tmp_path / "nobias.onnx"
    onnx.save(model, str(stripped))
    assert "no MatMul/Gemm with a constant bias" in refusal(stripped)
