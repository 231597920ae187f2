"""benchmarks/verdict_stability.py end to end on a tiny BERT: one repeat per load level."""

from __future__ import annotations

import json

from onnxruntime.quantization import QuantType, quantize_dynamic

from benchmarks.verdict_stability import SpeedRule, busy, judge_claim, run_benchmark, table
from workbench.backends.registry import Artifact, BuildRequest
from workbench.evaluate.paired import PairedConfig, PairedTarget


def _target(name: str, path, tiny_model, tiny_onnx) -> PairedTarget:
    req = BuildRequest(
        name=name, backend="onnxruntime", device="cpu", precision="fp32", compile=False,
        cuda_graphs=False, fp32_onnx=str(tiny_onnx), torch_model="",
        tokenizer_file=str(tiny_model.encoder_dir / "tokenizer.json"), max_length=16,
        table_file="", method="max", calibrator="workbench", per_channel=True, exclude=(),
        cache_dir="",
    )  # fmt: skip
    return PairedTarget(req, Artifact(str(path), "sha", name))


def test_benchmark_runs_every_load_level_and_judges_the_claim(tiny_model, tiny_onnx, tmp_path):
    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(tiny_onnx), str(int8), weight_type=QuantType.QInt8)
    rule = SpeedRule(
        _target("fp32", tiny_onnx, tiny_model, tiny_onnx),
        _target("int8", int8, tiny_model, tiny_onnx),
        (2, 16),
        1.2,
        1,
    )
    result = run_benchmark(rule, 1, [0, 2], PairedConfig(rounds=3, block_ms=5.0, warmup=2))
    rows = result["rows"]
    assert [(x["busy_processes"], x["repeat"]) for x in rows] == [(0, 0), (2, 0)]
    for x in rows:
        assert x["verdict"] in ("pass", "fail", "inconclusive")
        assert x["ci_low"] <= x["ratio"] <= x["ci_high"] or x["record"]["contended"]
        assert (x["verdict"] == "inconclusive") == bool(x["settle"])
    quiet = rows[0]["ratio"]  # 0.0 when every quiet block was starved (a busy CI runner)
    assert result["quiet_median"] == (quiet if quiet > 0 else None)
    judged = result["quiet_median"] is not None
    assert result["claim_holds"] == (
        judged and not result["outside_tolerance"] and not result["pass_and_fail"]
    )
    text = table(result, rule)
    assert text.count("\n| ") == 3 and "int8 vs fp32" in text  # header + 2 rows
    json.dumps(result)  # the JSON the benchmark writes


def test_claim_catches_a_flip_and_an_unflagged_loaded_outlier():
    def row(load, ratio, verdict):
        return {"busy_processes": load, "repeat": 0, "ratio": ratio, "verdict": verdict}

    ok = judge_claim([row(0, 1.5, "pass"), row(2, 1.0, "inconclusive"), row(4, 1.6, "pass")])
    assert ok["claim_holds"] and ok["quiet_median"] == 1.5
    outlier = judge_claim([row(0, 1.5, "pass"), row(4, 1.0, "pass")])
    assert outlier["outside_tolerance"] == [(4, 0)] and not outlier["claim_holds"]
    flip = judge_claim([row(0, 1.5, "pass"), row(0, 1.45, "fail")])
    assert flip["pass_and_fail"] and not flip["claim_holds"]


def test_busy_loops_are_killed_on_exit():
    with busy(2, max_seconds=60) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
