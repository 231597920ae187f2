"""Dynamic activations for chosen MatMuls inside a static Q/DQ model, through real ORT."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.calibration.conftest import random_texts
from tests.calibration.recovery_helpers import agreement, feeds_of, logits
from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.per_token import dynamic_matmuls
from workbench.calibration.qdq import write_qdq_model
from workbench.calibration.table import calibrate
from workbench.errors import ConfigError

# run-time activation scales: ORT's fused dynamic op, or the integer MatMul behind our
# per-row scaling (static Q/DQ MatMuls become MatMulIntegerToFloat fed by QuantizeLinear)
DYNAMIC_OPS = {"per-tensor": "DynamicQuantizeMatMul", "per-token": "MatMulIntegerToFloat"}


@pytest.fixture(scope="module")
def calib_feeds(tiny_tokenizer):
    return feeds_of(tiny_tokenizer, random_texts(64, seed=5))


@pytest.fixture(scope="module")
def test_feeds(tiny_tokenizer):
    return feeds_of(tiny_tokenizer, random_texts(256, seed=6), batch=32)


@pytest.fixture(scope="module")
def qdq(tiny_onnx, calib_feeds, tmp_path_factory):
    table = calibrate(tiny_onnx, calib_feeds, "max", open_runner=open_ort_runner)
    return write_qdq_model(tiny_onnx, table, tmp_path_factory.mktemp("pt") / "q.onnx", True)


@pytest.fixture(scope="module")
def ffn_out(tiny_onnx):
    """The FFN-out MatMuls (GELU outputs: the long-tailed activations of BERT)."""
    g = onnx.load(str(tiny_onnx)).graph
    return [
        n.name
        for n in g.node
        if n.op_type == "MatMul" and "output/dense" in n.name and "attention" not in n.name
    ]


def _optimized_nodes(path, tmp_path) -> dict:
    """Node name -> node in ONNX Runtime's optimized graph (extended level: no NCHWc)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return {n.name: n for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}


def _dynamic(node, granularity: str) -> bool:
    """A per-tensor dynamic MatMul is ORT's DynamicQuantizeMatMul; a per-token one the
    integer kernel fed by the row-normalized input (constant 1/127 scale), unlike the
    MatMulIntegerToFloat ORT makes from a static Q/DQ pair."""
    if granularity == "per-tensor":
        return node.op_type == "DynamicQuantizeMatMul"
    return node.op_type == "MatMulIntegerToFloat" and node.input[2].endswith("_unit_scale")


@pytest.mark.parametrize("granularity", ["per-tensor", "per-token"])
def test_chosen_matmuls_run_dynamic_the_rest_static(
    tiny_onnx, qdq, ffn_out, test_feeds, tmp_path, granularity
):
    assert len(ffn_out) == 2
    out = dynamic_matmuls(qdq, ffn_out, tmp_path / "mixed.onnx", granularity=granularity)
    nodes, static_nodes = _optimized_nodes(out, tmp_path), _optimized_nodes(qdq, tmp_path)
    dynamic = {name for name, n in nodes.items() if _dynamic(n, granularity)}
    assert dynamic == set(ffn_out)
    assert not any(_dynamic(n, g) for n in static_nodes.values() for g in DYNAMIC_OPS)
    up = ffn_out[0].replace("output/dense", "intermediate/dense")
    assert nodes[up].op_type == static_nodes[up].op_type
    # the other MatMuls keep their static Q/DQ: one fewer activation Q per dynamic MatMul
    q_before = sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(qdq)).graph.node)
    q_after = sum(
        n.op_type == "QuantizeLinear" and not n.name.endswith("_tok_quantize")  # per-token's own
        for n in onnx.load(str(out)).graph.node
    )
    assert q_after == q_before - len(ffn_out)
    ref = logits(tiny_onnx, test_feeds)
    got, static = logits(out, test_feeds), logits(qdq, test_feeds)
    assert np.isfinite(got).all()
    err, err_static = np.abs(got - ref).mean(), np.abs(static - ref).mean()
    assert err < 2 * err_static + 1e-6  # same order as static: no broken rewrite
    assert agreement(got, ref) > 0.9


def _tapped(model_path, node: str, feeds: dict, tmp_path):
    """(input x, per-token output y, int8 weight, weight scales) of per-token ``node``, read
    from ORT with the MatMul's float input and rescaled output made graph outputs."""
    from onnx import helper, numpy_helper

    m = onnx.load(str(model_path))
    mm = next(n for n in m.graph.node if n.name == node)
    assert mm.op_type == "MatMulIntegerToFloat"  # ORT's integer kernel, float output
    rescale = next(n for n in m.graph.node if n.name == f"{node}_tok_rescale")
    x_name = next(n for n in m.graph.node if n.name == f"{node}_tok_max").input[0]
    for t in (x_name, rescale.output[0]):
        m.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(tmp_path / "tapped.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "tapped.onnx"), providers=["CPUExecutionProvider"])
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    w_q, w_s = inits[mm.input[1]].astype(np.int64), inits[mm.input[3]]
    feeds = {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}}
    x, y = sess.run([x_name, rescale.output[0]], feeds)
    return x, y, w_q, w_s


def _check_per_row_int8(x, y, w_q, w_s, amax) -> None:
    """``y`` is ``x`` quantized per row with range ``amax`` times the int8 weight."""
    unit = x * (np.float32(1) / amax)  # float32, as the graph's Reciprocal and Mul
    xq = np.clip(np.round(unit / np.float32(1 / 127)), -127, 127).astype(np.int64)
    want = (xq @ w_q).astype(np.float32) * np.float32(1 / 127) * w_s * amax
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(y, x @ (w_q * w_s), rtol=1e-4, atol=1e-5)  # it is quantized


def test_per_token_matches_a_numpy_oracle(tiny_onnx, qdq, ffn_out, test_feeds, tmp_path):
    """One dynamic MatMul's output equals NumPy per-row int8 quantization of its input."""
    node = ffn_out[0]
    out = dynamic_matmuls(qdq, [node], tmp_path / "one.onnx", granularity="per-token")
    x, y, w_q, w_s = _tapped(out, node, test_feeds[0], tmp_path)
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-12))
    _check_per_row_int8(x, y, w_q, w_s, amax)


def test_after_a_fused_gelu_one_reduction_and_a_floor(tiny_onnx, test_feeds, tmp_path):
    """On the fused graph the FFN-down MatMul reads BiasGelu's output, which is never below
    -0.1700: the row's range is max(row max, 0.171) from one ReduceMax (no ReduceMin), it
    still covers every value, and the output is that per-row int8 arithmetic."""
    from workbench.backends.onnxruntime.fusion import fuse_bert
    from workbench.backends.onnxruntime.recovery import ffn_matmuls
    from workbench.calibration.per_token import GELU_FLOOR

    fused = fuse_bert(tiny_onnx, tmp_path / "fused.onnx", num_heads=2).path
    down = ffn_matmuls(onnx.load(str(fused)), narrowing_only=True)
    assert len(down) == 2  # one per layer of the tiny BERT
    out = dynamic_matmuls(fused, down[:1], tmp_path / "one.onnx", granularity="per-token")
    m, node = onnx.load(str(out)), down[0]
    ops = [n.op_type for n in m.graph.node if n.name.startswith(f"{node}_tok")]
    assert "ReduceMax" in ops and "ReduceMin" not in ops and "Neg" not in ops
    x_name = next(n for n in m.graph.node if n.name == f"{node}_tok_max").input[0]
    assert next(n for n in m.graph.node if x_name in n.output).op_type == "BiasGelu"
    x, y, w_q, w_s = _tapped(out, node, test_feeds[0], tmp_path)
    assert x.min() >= -GELU_FLOOR  # the floored range covers the negative side
    _check_per_row_int8(x, y, w_q, w_s, np.maximum(x.max(axis=-1, keepdims=True), GELU_FLOOR))


def test_bad_requests_are_refused(qdq, tmp_path):
    with pytest.raises(ConfigError, match="no node"):
        dynamic_matmuls(qdq, ["nope"], tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="granularity"):
        dynamic_matmuls(qdq, ["nope"], tmp_path / "x.onnx", granularity="per-row-ish")
    gemm = next(n.name for n in onnx.load(str(qdq)).graph.node if n.op_type == "Gemm")
    with pytest.raises(ConfigError, match="only MatMul"):
        dynamic_matmuls(qdq, [gemm], tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
