"""Benchmarks cannot rot: each script imports and runs as a script, the CPU ones run end to end
at tiny sizes (numbers meaningless, structure checked), and results keep their load average.

GPU-only scripts are imported and their CPU side exercised here or in their own tests
(tests/gpu/test_gpu_cpu_side.py, tests/test_gpu_serving.py, tests/backends/test_ort_cuda.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import _results

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_"))
NO_CLI = {"device_minilm_shim"}  # a device shim, not a benchmark: nothing to parse


# ---- every script: imports as a module and answers --help as a script ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_runs_as_a_script(name: str) -> None:
    if name in NO_CLI:
        pytest.skip(f"{name}.py has no command line (a device shim)")
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH.parent,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")


def test_every_benchmark_is_covered_by_a_smoke_test() -> None:
    """A new benchmarks/*.py must get a smoke test here (or in its own test file)."""
    covered = set(SMOKED) | set(OWN_TESTS) | NO_CLI
    assert set(SCRIPTS) <= covered, sorted(set(SCRIPTS) - covered)


OWN_TESTS = {
    "gpu": "tests/gpu/test_gpu_cpu_side.py",
    "gpu_serving": "tests/test_gpu_serving.py",
    "int8_two_backends": "tests/test_int8_two_backends.py",
    "ort_gpu_parts": "tests/backends/test_ort_cuda.py",
    "gpu_lowp": "tests/test_benchmarks.py::test_gpu_lowp_cpu_side",
    "verdict_stability": "tests/test_verdict_stability.py",
}
SMOKED = ("calibration", "calibration_bias", "cpu_fused_int8", "cpu_int8", "peers",
          "sweep_overhead")  # fmt: skip


@pytest.mark.parametrize("name", sorted(OWN_TESTS))
def test_own_smoke_tests_exist(name: str) -> None:
    path = BENCH.parent / OWN_TESTS[name].split("::")[0]
    assert path.is_file() and name in path.read_text(encoding="utf-8")


# ---- the load average and the overwrite guard ---------------------------------------------


def test_result_records_load_before_and_after(tmp_path: Path) -> None:
    out = _results.save_result(tmp_path / "r.json", {"rows": [1]}, [0.5, 0.4, 0.3])
    data = json.loads(out.read_text())
    assert data["rows"] == [1] and data["load_average"]["before"] == [0.5, 0.4, 0.3]
    after = data["load_average"]["after"]
    assert len(after) == 3 and all(x >= 0 for x in after)


def test_quiet_result_is_not_overwritten_by_a_loaded_one(tmp_path: Path) -> None:
    path = _results.save_result(tmp_path / "r.json", {"x": "quiet"}, [0.3, 0.3, 0.3])
    with pytest.raises(SystemExit, match=r"quiet machine.*--force-overwrite"):
        _results.save_result(path, {"x": "loaded"}, [3.2, 2.0, 1.0])
    assert json.loads(path.read_text())["x"] == "quiet"
    _results.save_result(path, {"x": "forced"}, [3.2, 2.0, 1.0], force=True)
    assert json.loads(path.read_text())["x"] == "forced"


def test_loaded_or_unknown_results_may_be_replaced(tmp_path: Path) -> None:
    path = _results.save_result(tmp_path / "r.json", {"x": "loaded"}, [4.0, 4.0, 4.0])
    _results.save_result(path, {"x": "loaded again"}, [3.0, 3.0, 3.0])
    assert json.loads(path.read_text())["x"] == "loaded again"
    legacy = tmp_path / "legacy.json"  # an older result: one reading, taken after the run
    legacy.write_text(json.dumps({"x": "old", "load_average_1_5_15": [0.9, 0.8, 0.7]}))
    with pytest.raises(SystemExit):
        _results.save_result(legacy, {"x": "loaded"}, [2.5, 2.0, 1.0])
    _results.save_result(legacy, {"x": "quiet"}, [0.2, 0.2, 0.2])
    data = json.loads(legacy.read_text())
    assert data["x"] == "quiet" and "load_average_1_5_15" not in data


# ---- the CPU side of the timing: LatencySpec built by keyword, timed in a child ------------


def test_cpu_fused_int8_times_builds_in_child_processes(tiny_model, tiny_onnx) -> None:
    from benchmarks import cpu_fused_int8 as cf

    s = SimpleNamespace(tokenizer_file=str(tiny_model.encoder_dir / "tokenizer.json"))
    builds = [
        cf.Build("torch-fp32", "pytorch", str(tiny_model.path), "fp32", "eager"),
        cf.Build("ort-fp32", "onnxruntime", str(tiny_onnx), "fp32", "export"),
    ]
    lat = cf.latency(builds, s, rounds=1, iterations=2, threads=1)
    assert set(lat["p50"]) == {f"{b.name}@{n}" for b in builds for n, _ in cf.SHAPES}
    assert all(v > 0 for v in lat["p50"].values())
    assert set(lat["rss"]) == {"torch-fp32", "ort-fp32"}


def test_gpu_lowp_cpu_side() -> None:
    from benchmarks import gpu_lowp

    assert gpu_lowp.BUILDS and all(b.name for b in gpu_lowp.BUILDS)
    with pytest.raises(SystemExit) as e:
        gpu_lowp.main(["--help"])
    assert e.value.code == 0
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("gpu_lowp measures CUDA builds (FP16/FP8/INT8): no CUDA GPU here")


# ---- tiny end-to-end runs: JSON written to tmp_path, structure checked ---------------------


def _json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data["load_average"]) == {"before", "after"}
    return data


@pytest.mark.slow
def test_cpu_fused_int8_smoke(tmp_path: Path) -> None:
    from benchmarks import cpu_fused_int8 as cf

    cf.main(["--smoke", "--threads", "1", "--out", str(tmp_path / "r.json")])
    data = _json(tmp_path / "r.json")
    names = [r["build"] for r in data["rows"]]
    assert {"torch-fp32", "ort-fp32", "ort-fp32-fused", "ort-int8-dynamic-fused"} <= set(names)
    assert all(r["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE") for r in data["rows"])
    for row in data["rows"]:
        assert row["p50_ms_b1"] > 0 and row["p50_ms_b8"] > 0 and 0 <= row["agreement"] <= 1
        if row["build"].startswith("ort-int8"):  # judged on unused calibration-pool rows too
            fresh = row["fresh"]
            assert fresh["n"] > 0 and fresh["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
            assert fresh["disagreements"] == round((1 - fresh["agreement"]) * fresh["n"])
    assert data["rounds"] == 1 and data["iterations"] == 2


@pytest.mark.slow
def test_cpu_int8_smoke(tmp_path: Path) -> None:
    from benchmarks import cpu_int8

    cpu_int8.main(["--smoke", "--threads", "1", "--out", str(tmp_path / "r.json")])
    data = _json(tmp_path / "r.json")
    builds = {r["build"] for r in data["rows"]}
    assert {"torch-fp32", "ort-fp32"} <= builds and len(builds) >= 3
    assert all(r["p50_ms"] > 0 and r["speedup_vs_ort_fp32"] > 0 for r in data["rows"])


@pytest.mark.slow
def test_peers_smoke(tmp_path: Path) -> None:
    from benchmarks import peers

    out = tmp_path / "r.json"
    peers.main(["--smoke", "--search-json", str(tmp_path / "none.json"), "--out", str(out)])
    data = _json(out)
    names = {r["build"] for r in data["rows"]}
    assert "ort-fp32" in names and "ort-minmax" in names and data["failed"] == {}
    assert all(r["p50_ms_b1"] > 0 for r in data["rows"])


def test_cpu_fused_int8_candidate_rows(tmp_path: Path) -> None:
    from benchmarks import cpu_fused_int8 as cf

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    (b,) = cf.candidates([f"strict-pick={model}"])
    assert (b.name, b.backend, b.model) == ("strict-pick", "onnxruntime", str(model))
    for bad in (f"={model}", "x=" + str(tmp_path / "missing.onnx"), "no-equals-sign"):
        with pytest.raises(SystemExit, match="NAME=PATH"):
            cf.candidates([bad])


def test_peers_takes_the_searched_row_only_from_a_static_calibration() -> None:
    from benchmarks import peers

    best = {"kind": "static", "graph": "fused", "recovery": [], "method": "max"}
    assert peers.searched_refusal(best) is None
    assert "dynamic plain" in peers.searched_refusal({**best, "kind": "dynamic", "graph": "plain"})
    assert "bias-correction" in peers.searched_refusal({**best, "recovery": ["bias-correction"]})
    assert "no chosen build" in peers.searched_refusal(None)


@pytest.mark.slow
def test_calibration_bias_smoke(tmp_path: Path, tiny_model, tiny_onnx) -> None:
    from benchmarks import calibration_bias

    out = tmp_path / "r.json"
    args = ["--onnx", str(tiny_onnx), "--model-dir", str(tiny_model.encoder_dir),
            "--max-length", "32", "--n", "16", "--methods", "max", "--out", str(out)]  # fmt: skip
    assert calibration_bias.main(args) == 0
    data = _json(out)
    assert set(data["sets"]) == {"biased", "unbiased"}
    assert set(data["amax_ratio_biased_over_unbiased"]) == {"max"}


@pytest.mark.slow
def test_calibration_smoke(tmp_path: Path) -> None:
    from benchmarks import calibration

    out = tmp_path / "r.json"
    calibration.main(["--models", "minilm", "--ns", "16", "--ort-ns", "16", "--seq", "32",
                      "--work", str(tmp_path / "work"), "--tmp", str(tmp_path),
                      "--out", str(out)])  # fmt: skip
    data = _json(out)
    tools = {r["tool"]: r["status"] for r in data["rows"]}
    assert tools == {"fp32-inference": "ok", "workbench": "ok", "onnxruntime": "ok"}


@pytest.mark.slow
def test_sweep_overhead_smoke(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="sweeps run on Ray (extra: sweep)")
    from benchmarks import sweep_overhead

    out = tmp_path / "r.json"
    sweep_overhead.main(["--grid", "1", "--num-cpus", "1", "--out", str(out)])
    data = _json(out)
    assert data["results"]["cells"] == 1 and data["results"]["failed"] == 0
