"""Result records round-trip through JSON and refuse incomplete or foreign files."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from workbench.errors import ResultsError
from workbench.results.records import (
    SCHEMA_VERSION,
    AccuracyResult,
    BuildResult,
    LatencyResult,
    ModelSummary,
    Provenance,
    RunResult,
    SkippedBuild,
    load_run,
    save_run,
)
from workbench.results.spec import Experiment


def _run() -> RunResult:
    lat = LatencyResult(
        1, 128, 10, 2, 1.0, 1.5, 2.0, 1.1, 1000.0, False, "perf_counter_ns", [1.0, 1.2]
    )
    from workbench.evaluate.fidelity import fidelity

    ref = np.array([[2.0, -1.0], [0.5, 0.1], [-1.0, 1.0]])
    fid = fidelity(ref, ref + 0.1, np.array([0, 1, 1]))
    acc = AccuracyResult(10, 0.8, 0.79, 1.0, 0.0, 1.0, 1.0, fid, [[4, 1], [1, 4]], "p.parquet")
    build = BuildResult(
        "ort-fp32",
        "onnxruntime",
        "fp32",
        "cpu",
        "m.onnx",
        "ab",
        acc,
        [lat],
        100.0,
        None,
        None,
        ["note"],
    )
    prov = Provenance(
        "sha", {"numpy": "2"}, "3.11", "linux", "cpu", 2, ["avx2"], "", "now", {"split": 0}
    )
    model = ModelSummary("default", "m", "m.onnx", "ab" * 32, 1e-6)
    exp = Experiment(name="t", quick=True)
    return RunResult(
        SCHEMA_VERSION, "r1", "rt", "hash", ["neg", "pos"], "ort-fp32", [build], None, prov, exp,
        model, [SkippedBuild("trt-fp16", "tensorrt", "cuda", "fp16", "TensorRT not installed")],
        ["a warning"], ["degenerate model: ort-fp32 predicts class 0 for 100% of 2 test rows"], [],
    )  # fmt: skip


def test_run_round_trips(tmp_path):
    run = _run()
    save_run(run, tmp_path)
    assert load_run(tmp_path) == run


def test_nan_is_saved_as_null_and_read_back_as_nan(tmp_path):
    run = _run()
    lat = run.builds[0].latency[0]
    bad = LatencyResult(**{**lat.__dict__, "p99_ms": math.nan})
    build = BuildResult(**{**run.builds[0].__dict__, "latency": [bad]})
    save_run(RunResult(**{**run.__dict__, "builds": [build]}), tmp_path)
    assert (
        json.loads((tmp_path / "run.json").read_text())["builds"][0]["latency"][0]["p99_ms"] is None
    )
    assert math.isnan(load_run(tmp_path).builds[0].latency[0].p99_ms)


def test_missing_field_names_the_field(tmp_path):
    save_run(_run(), tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    del data["builds"][0]["accuracy"]["macro_f1"]
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"macro_f1 is missing"):
        load_run(tmp_path)


def test_other_schema_version_and_corrupt_json_are_refused(tmp_path):
    save_run(_run(), tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    data["schema_version"] = 99
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="schema_version 99"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_run(tmp_path)


def test_unknown_build_lists_the_known_ones():
    with pytest.raises(ResultsError, match="has: ort-fp32"):
        _run().build("nope")


def test_schema_2_run_is_read_with_no_paired_timings(tmp_path):
    run = _run()
    save_run(run, tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    del data["speedups"], data["sanity_warnings"]
    data["schema_version"] = 2
    (tmp_path / "run.json").write_text(json.dumps(data))
    # an older run: no paired timings and no sanity checks, both read as []
    assert load_run(tmp_path) == replace(run, sanity_warnings=[])
    data["schema_version"] = 1
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="schema_version 1, this workbench reads 2, 3"):
        load_run(tmp_path)


def test_kernels_label_names_whose_kernels_ran_and_old_runs_read_as_unrecorded(tmp_path):
    from workbench.results.records import kernels_label

    assert kernels_label("onnxruntime", "cuda:NVIDIA H200") == "ONNX Runtime CUDA"
    assert kernels_label("onnxruntime", "cpu") == "ONNX Runtime CPU"
    assert kernels_label("tensorrt", "cuda:NVIDIA H200") == "TensorRT"
    assert kernels_label("pytorch", "cuda:NVIDIA H200") == "PyTorch + cuBLAS"
    assert kernels_label("pytorch", "cpu") == "PyTorch CPU"
    assert (
        kernels_label("pytorch", "cuda:NVIDIA H200", workbench_triton=True)
        == "PyTorch + workbench Triton kernels"
    )
    run = _run()
    run = replace(run, builds=[replace(b, kernels="ONNX Runtime CPU") for b in run.builds])
    save_run(run, tmp_path)
    assert load_run(tmp_path) == run
    data = json.loads((tmp_path / "run.json").read_text())
    for b in data["builds"]:
        del b["kernels"]
    data["schema_version"] = 3  # written before the field existed: read as "" (not recorded)
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert {b.kernels for b in load_run(tmp_path).builds} == {""}
