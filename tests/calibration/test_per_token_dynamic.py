"""The search's dynamic INT8 candidate with per-token activations for its worst layers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.calibration.conftest import random_texts
from tests.calibration.recovery_helpers import agreement, feeds_of, logits
from workbench.experiment.search_builds import CandidateBuilder, available_recoveries
from workbench.experiment.search_core import DYNAMIC, Candidate


def _optimized_ops(path, tmp_path) -> dict[str, str]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return {n.name: n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}


def test_dynamic_build_quantizes_its_worst_matmuls_per_token(tiny_onnx, tiny_tokenizer, tmp_path):
    g = onnx.load(str(tiny_onnx)).graph
    inits = {i.name for i in g.initializer}
    weighted = [n.name for n in g.node if n.op_type == "MatMul" and n.input[1] in inits]
    gemm = next(n.name for n in g.node if n.op_type == "Gemm")
    builder = CandidateBuilder(str(tiny_onnx), {}, tmp_path / "c", "unused", lambda: [])
    # a Gemm first in the ranking is skipped (only MatMuls go per-token); a float node too
    builder.ranking = (gemm, weighted[0], *weighted[1:6])
    c = Candidate(DYNAMIC, True, (weighted[0],), "dynamic", "plain", ("per-token-worst-4",))
    path = builder.build(c)
    assert builder.build(c) == path  # cached by what made it
    ops = _optimized_ops(path, tmp_path)
    worst = weighted[1:5]
    assert {n for n, op in ops.items() if op == "MatMulIntegerToFloat"} >= set(worst)
    assert ops[weighted[0]] == "MatMul"  # kept in float
    # the other weighted MatMuls: ORT's fused dynamic op (renamed by quantize_dynamic)
    n_rest = sum(op == "DynamicQuantizeMatMul" for op in ops.values())
    assert n_rest >= len(weighted) - 5 > 0
    feeds = feeds_of(tiny_tokenizer, random_texts(128, seed=7), batch=32)
    ref, got = logits(tiny_onnx, feeds), logits(path, feeds)
    plain = logits(builder.build(Candidate(DYNAMIC, True, (weighted[0],), "dynamic")), feeds)
    assert np.isfinite(got).all()
    assert np.abs(got - ref).mean() < 2 * np.abs(plain - ref).mean() + 1e-6
    assert agreement(got, ref) > 0.9


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_per_token_is_offered_for_both_kinds(kind):
    assert ("per-token-worst-4",) in available_recoveries(kind)


def test_per_token_ffn_takes_every_feed_forward_matmul(tiny_onnx, tiny_tokenizer, tmp_path):
    """``per-token-ffn``: every MatMul whose weight is not square (hidden -> intermediate and
    back) goes per-token, whatever the ranking; the square ones stay ORT's dynamic op; offered
    alone and with SmoothQuant, for dynamic builds only."""
    g = onnx.load(str(tiny_onnx)).graph
    inits = {i.name: i for i in g.initializer}
    weighted = [n for n in g.node if n.op_type == "MatMul" and n.input[1] in inits]
    ffn = {n.name for n in weighted if len(set(inits[n.input[1]].dims)) == 2}
    assert ffn and {n.name for n in weighted} - ffn  # both kinds exist in the tiny BERT
    named = {n.name for n in weighted if "intermediate" in n.name or "/output/dense" in n.name}
    assert ffn == {n for n in named if "attention" not in n}  # BERT's FFN, by its export names
    builder = CandidateBuilder(str(tiny_onnx), {}, tmp_path / "c", "unused", lambda: [])
    builder.ranking = ()  # not used by this option
    path = builder.build(Candidate(DYNAMIC, True, (), "dynamic", "plain", ("per-token-ffn",)))
    ops = _optimized_ops(path, tmp_path)
    # ORT's own dynamic MatMuls keep the "_quant" names its quantizer gives them (some fused
    # to MatMulIntegerToFloat too); the per-token ones keep the MatMul's name
    per_token = {n for n, op in ops.items() if op == "MatMulIntegerToFloat"}
    assert {n for n in per_token if not n.endswith("_quant")} == ffn
    rest = {n.removesuffix("_quant") for n, op in ops.items() if n.endswith("_quant")}
    assert rest >= {n.name for n in weighted} - ffn
    feeds = feeds_of(tiny_tokenizer, random_texts(64, seed=8), batch=32)
    assert agreement(logits(path, feeds), logits(tiny_onnx, feeds)) > 0.9
    assert ("per-token-ffn",) in available_recoveries("dynamic")
    assert ("smoothquant-0.8", "per-token-ffn") in available_recoveries("dynamic")
    assert ("smoothquant-0.8", "per-token-ffn-down") in available_recoveries("dynamic")
    assert not any("per-token-ffn" in r for r in available_recoveries("static"))


def test_no_matmul_to_make_per_token_gives_the_plain_build(tiny_onnx, tmp_path):
    """A ranking with no MatMul of constant weight (here only the Gemm head): the option
    changes nothing rather than failing the search."""
    g = onnx.load(str(tiny_onnx)).graph
    gemm = next(n.name for n in g.node if n.op_type == "Gemm")
    builder = CandidateBuilder(str(tiny_onnx), {}, tmp_path / "c", "unused", lambda: [])
    builder.ranking = (gemm,)
    plain = builder.build(Candidate(DYNAMIC, True, (), "dynamic"))
    token = builder.build(Candidate(DYNAMIC, True, (), "dynamic", "plain", ("per-token-worst-4",)))
    assert token == plain
