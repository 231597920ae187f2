"""benchmarks/gpu_serving.py's orchestration, run for real on the CPU (``--cpu-smoke``).

Spawned worker processes, barriers, timed loops, aggregation and the JSON are the same
code as on the GPU; only the model (a tiny float BERT, no compile, no CUDA graphs) differs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.gpu_serving import main, table

pytest.importorskip("torch", reason="the smoke workers run a tiny torch BERT (extra: torch)")
pytest.importorskip("transformers", reason="the smoke workers build a BertConfig model")

SMOKE = ["--cpu-smoke", "--seconds", "1", "--batch", "4", "--instances", "1", "2"]


def _run(tmp_path: Path, *extra: str) -> tuple[int, dict, float]:
    out = tmp_path / "serving.json"
    t0 = time.monotonic()
    rc = main([*SMOKE, "--out", str(out), *extra])
    return rc, json.loads(out.read_text()), time.monotonic() - t0


def _row(res: dict, precision: str, k: int) -> dict:
    (row,) = [r for r in res["rows"] if r["precision"] == precision and r["instances"] == k]
    return row


def test_every_cell_runs_on_reused_workers_and_sums_their_rates(tmp_path: Path) -> None:
    rc, res, _ = _run(tmp_path)
    assert rc == 0
    assert (res["model"], res["seq"], res["batch"], res["skipped"]) == ("tiny-bert", 128, 4, [])
    for precision in ("fp16", "fp8"):
        for k in (1, 2):
            row = _row(res, precision, k)
            assert row["ok"] and row["errors"] == []
            assert sorted(w["rank"] for w in row["workers"]) == list(range(k))
            for w in row["workers"]:
                assert w["batches"] > 0 and w["elapsed_s"] >= 1.0
                assert w["seq_per_s"] == pytest.approx(4 * w["batches"] / w["elapsed_s"], rel=1e-3)
            total = sum(w["seq_per_s"] for w in row["workers"])
            assert row["aggregate_seq_per_s"] == pytest.approx(total, abs=0.2)
        assert _row(res, precision, 1)["x_vs_k1"] == 1.0
        # max(k) = 2 processes served both cells, and all exited cleanly
        assert res["exitcodes"][precision] == {"0": 0, "1": 0}
    assert [f["ready_instances"] for f in res["fit"]] == [2, 2]
    assert table(res["rows"]).count("\n") == len(res["rows"]) + 1


def test_a_worker_killed_mid_run_is_recorded_and_the_parent_returns(tmp_path: Path) -> None:
    extra = ["--builds", "fp16", "--fail-rank", "1", "--fail-at", "run", "--barrier-timeout-s", "5"]
    rc, res, wall = _run(tmp_path, *extra)
    assert rc == 1
    assert wall < 300  # returned, not hung (a busy machine is slow, not stuck)
    assert _row(res, "fp16", 1)["ok"]
    row = _row(res, "fp16", 2)
    assert not row["ok"]
    assert row["errors"] == ["rank 1: died (exitcode 3)"]
    ((w,),) = [row["workers"]]  # the surviving worker's batches still count
    assert w["rank"] == 0 and w["batches"] > 0
    assert row["aggregate_seq_per_s"] == pytest.approx(w["seq_per_s"], abs=0.2)
    assert res["exitcodes"]["fp16"] == {"0": 0, "1": 3}


def test_a_worker_failing_its_setup_fails_only_the_cells_that_need_it(tmp_path: Path) -> None:
    extra = ["--builds", "fp16", "--fail-rank", "1", "--fail-at", "setup"]
    rc, res, _ = _run(tmp_path, *extra)
    assert rc == 1
    assert _row(res, "fp16", 1)["ok"]
    row = _row(res, "fp16", 2)
    assert not row["ok"] and row["workers"] == [] and row["aggregate_seq_per_s"] == 0
    assert row["errors"][0] == "only 1 of 2 workers ready"
    assert "injected setup failure in rank 1" in row["errors"][1]
    assert res["exitcodes"]["fp16"] == {"0": 0, "1": 1}


def test_a_spent_time_budget_skips_cells_and_still_writes_the_json(tmp_path: Path) -> None:
    rc, res, _ = _run(tmp_path, "--time-budget-s", "0")
    assert rc == 0
    assert res["rows"] == []
    assert [s.split(":")[0] for s in res["skipped"]] == ["fp16", "fp8"]


def test_the_script_imports_without_torch() -> None:
    code = "import sys, benchmarks.gpu_serving; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    got = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert got.stdout.strip() == "False"
