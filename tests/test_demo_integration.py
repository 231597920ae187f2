"""`workbench demo --quick` end to end on the shipped model and data (real numbers, real HTML)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench.cli import main
from workbench.results.records import load_run

pytestmark = pytest.mark.slow

# On the quick subset (300 test samples) INT8 may lose a few points; more than this is a bug.
INT8_TOLERANCE = 0.06
GATED = "ort-int8-searched"  # the shipped demo's gated build (demo.toml)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """`workbench demo --quick` as a user runs it, output captured (not a terminal)."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("demo")
    args = ["--quick", "--reports", str(root / "reports"), "--calibration-sets",
            str(root / "calib"), "--run-id", "quick"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "workbench", "demo", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=1800,
    )
    assert proc.returncode in (0, 1, 4), proc.stderr[-2000:]  # the recommended build's verdict
    return root / "reports" / "quick", proc


@pytest.fixture(scope="module")
def quick_run(quick_demo):
    return quick_demo[0]


def test_terminal_output_is_quiet_and_ends_with_the_verdict(quick_demo):
    _, proc = quick_demo
    out = proc.stdout + proc.stderr
    assert "\r" not in out  # no progress-bar noise when not a terminal
    assert "INFO root" not in out and "Loading weights" not in out
    assert "load data and model done in" in proc.stderr  # one plain line per stage instead
    lines = proc.stdout.strip().splitlines()
    gated = [x for x in lines if x.startswith("gate ") and GATED in x]
    assert gated and gated[0].split()[1].rstrip(":") in ("PASS", "FAIL", "INCONCLUSIVE")
    verdict = lines[-1].split(":")[0].removeprefix("demo ")  # the story's last line
    assert proc.returncode == {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 4}[verdict]
    table = proc.stdout.split("\n\n")[0].splitlines()
    assert max(len(line) for line in table) <= 100


def test_the_demo_searches_when_the_gated_build_does_not_pass(quick_demo):
    run_dir, proc = quick_demo
    gated = next(x for x in proc.stdout.splitlines() if x.startswith("gate "))
    if gated.startswith("gate PASS"):
        assert not (run_dir / "search").exists()
        assert proc.stdout.strip().splitlines()[-1].startswith(f"demo PASS: {GATED}")
        return
    assert (run_dir / "search" / "search.json").is_file()
    tail = proc.stdout.split("searching for the fastest INT8 build")[1]
    assert "recommended build: " in tail or "no INT8 build passes" in tail
    if "recommended build: " in tail:
        assert "speed-up ×" in tail and "95% CI" in tail
    last = proc.stdout.strip().splitlines()[-1]
    if not last.startswith("demo PASS"):
        assert "what would help:" in tail and "more labelled rows" in tail
    if gated.startswith("gate INCONCLUSIVE"):  # 300 rows could not tell: never a demo FAIL
        assert not last.startswith("demo FAIL") and proc.returncode != 1
        if "found nothing better" in tail:  # the gated build stays recommended
            assert last.startswith(f"demo INCONCLUSIVE: {GATED}")


def test_run_record_has_sane_numbers(quick_run):
    run = load_run(quick_run)
    names = [b.name for b in run.builds]
    assert names == ["torch-fp32", "ort-fp32", "ort-int8-static", "ort-int8-dynamic", GATED]
    ref = run.build("torch-fp32").accuracy
    assert ref is not None and ref.n == 300 and 0.6 < ref.accuracy < 0.95
    for b in run.builds:
        assert b.accuracy is not None
        assert abs(b.accuracy.accuracy - ref.accuracy) <= INT8_TOLERANCE, b.name
        assert b.accuracy.agreement > 0.8
        assert [(lat.batch_size, lat.seq_len) for lat in b.latency] == [(1, 128), (8, 128)]
        assert all(0 < lat.p50_ms < 10_000 for lat in b.latency)
        assert 50 < b.peak_rss_mb < 8000
    assert run.build("ort-fp32").accuracy.agreement > 0.99  # same model, other runtime
    for name in ("ort-int8-static", "ort-int8-dynamic", GATED):
        cov = run.build(name).int8_coverage
        assert cov is not None and cov.quantized_matmul > 0
    detail = " ".join(run.build(GATED).notes)  # the build's detail is its first note
    assert "SmoothQuant α 0.8" in detail and "narrowing feed-forward (of 6, the 2 most" in detail
    assert run.calibration is not None and run.calibration.n_samples == 64
    assert (quick_run / run.calibration.table_file).is_file()


def test_predictions_are_saved_per_sample(quick_run):
    run = load_run(quick_run)
    static = run.build("ort-int8-static")
    df = pd.read_parquet(quick_run / static.accuracy.predictions_file)
    assert len(df) == 300 and set(df.columns) >= {"idx", "label", "pred", "logits"}
    assert math.isclose((df["pred"] == df["label"]).mean(), static.accuracy.accuracy)


def test_report_contains_the_table(quick_run):
    html = (quick_run / "report.html").read_text()
    for name in ("torch-fp32", "ort-int8-static", "ort-int8-dynamic", GATED):
        assert name in html
    assert "<script src=" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_second_run_reuses_cached_stages(quick_run, tmp_path):
    code = main(
        [
            "demo",
            "--quick",
            "--reports",
            str(tmp_path),
            "--calibration-sets",
            str(quick_run.parent.parent / "calib"),
            "--run-id",
            "again",
            "--no-progress",
            "--no-search",
        ]
    )
    assert code in (0, 1, 4)  # the gated build's verdict
    a, b = load_run(quick_run), load_run(tmp_path / "again")
    assert a.model == b.model  # same classifier dir, same ONNX export (cached)
    for name in ("ort-int8-static", GATED):
        assert a.build(name).accuracy == b.build(name).accuracy
        assert a.build(name).model_sha256 == b.build(name).model_sha256
    # latency was cached by content hash: a re-run reproduces the same records
    assert a.build("ort-fp32").latency == b.build("ort-fp32").latency
