"""Speed-up intervals against scipy's bootstrap and a known true ratio; noise warnings on
constructed timing loops; the gate's shape and what its speed-up rests on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.run_fixtures import latency_result, make_demo_run
from workbench.gate import evaluate_gate, parse_policy
from workbench.report import latency
from workbench.results.records import LatencyResult


def _record(samples: np.ndarray, batch: int = 1, seq: int = 128) -> LatencyResult:
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return LatencyResult(
        batch_size=batch,
        seq_len=seq,
        iterations=len(samples),
        warmup=5,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(samples.mean()),
        throughput_seq_per_s=batch / (float(p50) / 1000.0),
        includes_host_device_copies=False,
        timer="perf_counter_ns",
        samples_ms=[float(x) for x in samples],
    )


def test_speedup_ci_matches_scipy_bootstrap():
    from scipy.stats import bootstrap

    base, cand = latency_result(1, 128, 6.1, seed=1), latency_result(1, 128, 3.8, seed=2)
    ci = latency.speedup_ci(base, cand)
    assert ci is not None
    assert ci.speedup == pytest.approx(base.p50_ms / cand.p50_ms)
    assert ci.low < ci.speedup < ci.high
    ref = bootstrap(
        (np.asarray(base.samples_ms), np.asarray(cand.samples_ms)),
        lambda b, c, axis: np.median(b, axis=axis) / np.median(c, axis=axis),
        paired=False,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        random_state=np.random.default_rng(7),
    ).confidence_interval
    width = ref.high - ref.low
    assert abs(ci.low - ref.low) < 0.15 * width and abs(ci.high - ref.high) < 0.15 * width
    assert latency.speedup_ci(base, cand) == ci  # seeded: same records, same interval


def test_speedup_ci_covers_the_true_ratio():
    hits = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        base = _record(10.0 * np.exp(rng.normal(0, 0.1, 150)))  # true median 10 ms
        cand = _record(5.0 * np.exp(rng.normal(0, 0.1, 150)))  # true median 5 ms
        ci = latency.speedup_ci(base, cand)
        assert ci is not None
        hits += ci.low <= 2.0 <= ci.high
    assert hits >= 25  # nominal 95%: 28.5 of 30 expected


def test_speedup_ci_needs_samples():
    base = latency_result(1, 128, 6.1, seed=1)
    assert latency.speedup_ci(base, dataclasses.replace(base, samples_ms=[])) is None


def test_noise_flags_tail_spread_drift_and_few_runs():
    rng = np.random.default_rng(0)
    clean = latency_result(8, 128, 31.0, seed=3)
    n = latency.noise(clean)
    assert n.warnings == []
    x = np.asarray(clean.samples_ms)
    assert n.tail == pytest.approx(clean.p99_ms / clean.p50_ms)
    q1, q3 = np.percentile(x, [25, 75])
    assert n.spread == pytest.approx((q3 - q1) / np.median(x))

    loaded = np.r_[rng.normal(30, 0.5, 100), rng.normal(45, 0.5, 100)]  # load arrived midway
    w = latency.noise(_record(loaded)).warnings
    assert any("second half" in m and "load changed" in m for m in w)
    assert any("interquartile" in m for m in w)

    tail = rng.normal(30, 0.3, 200)
    tail[rng.choice(200, 6, replace=False)] = 240.0  # 8x spikes from another process
    w = latency.noise(_record(tail)).warnings
    assert len(w) == 1 and "p99 is 8.0× p50" in w[0]

    few = latency.noise(_record(rng.normal(30, 0.3, 8))).warnings
    assert few == ["only 8 timed runs (at least 20 for stable percentiles)"]


def test_gate_shape_and_gate_latency(tmp_path):
    run = make_demo_run(tmp_path / "r")
    policy = parse_policy({"min_speedup": 1.58, "latency_batch": 8, "max_accuracy_drop": 0.05})
    d = evaluate_gate(tmp_path / "r", "ort-fp32", tmp_path / "r", "ort-int8-dynamic", policy)
    assert latency.gate_shape(d) == (8, 128)
    info = latency.gate_latency(run.builds, run.run_id, d)
    assert (
        info is not None and info["shape"] == (8, 128) and info["candidate"] == "ort-int8-dynamic"
    )
    ci = info["ci"]
    assert ci.speedup == pytest.approx(31.0 / 19.5, rel=1e-6)
    assert ci.low < 1.58 <= ci.high  # ×1.59 measured: a 1.58 limit is within its noise
    assert any("re-run could flip" in w for w in info["warnings"])

    far = parse_policy({"min_speedup": 1.2, "latency_batch": 8, "max_accuracy_drop": 0.05})
    d2 = evaluate_gate(tmp_path / "r", "ort-fp32", tmp_path / "r", "ort-int8-dynamic", far)
    assert latency.gate_latency(run.builds, run.run_id, d2)["warnings"] == []

    no_latency = parse_policy({"max_accuracy_drop": 0.05, "latency_batch": 8})
    d3 = evaluate_gate(tmp_path / "r", "ort-fp32", tmp_path / "r", "ort-int8-dynamic", no_latency)
    assert latency.gate_shape(d3) is None and latency.gate_latency(run.builds, "r", d3) is None


def test_latency_rows_cover_every_shape_grouped_by_shape(tmp_path):
    run = make_demo_run(tmp_path / "r")
    rows = latency.latency_rows(run.builds, (8, 128))
    assert [(r["batch"], r["name"]) for r in rows] == [
        (b, n)
        for b in (1, 8)
        for n in ("pytorch-fp32", "ort-fp32", "ort-int8-static", "ort-int8-dynamic")
    ]
    assert [r["is_gate"] for r in rows] == [False] * 4 + [True] * 4
    dyn8 = rows[-1]["speedup_ort"]
    assert dyn8["x"] == pytest.approx(31.0 / 19.5) and dyn8["low"] < dyn8["x"] < dyn8["high"]
    assert rows[5]["speedup_ort"]["low"] is None  # ort-fp32 against itself: no interval


def test_gate_latency_prefers_the_paired_interleaved_timing(tmp_path):
    from workbench.results.records import PairedSpeedup

    run = make_demo_run(tmp_path / "r")
    policy = parse_policy({"min_speedup": 1.5, "latency_batch": 8, "max_accuracy_drop": 0.05})
    d = evaluate_gate(tmp_path / "r", "ort-fp32", tmp_path / "r", "ort-int8-dynamic", policy)
    sp = PairedSpeedup(
        "ort-fp32", "ort-int8-dynamic", 8, 128, 1.2, 1.1, 1.3, 0.95, 38, 2, 2.6, 0.0, 1.4, 2,
        True, "load 2.6 on 2 cores, 2 of 40 blocks starved", [],
    )  # fmt: skip
    info = latency.gate_latency(run.builds, run.run_id, d, [sp])
    assert (info["ci"].speedup, info["ci"].low, info["ci"].high) == (1.2, 1.1, 1.3)
    assert "38 used, 2 starved dropped" in info["paired"]
    assert any("machine was busy" in w for w in info["warnings"])
    other_shape = dataclasses.replace(sp, batch=1)
    info = latency.gate_latency(run.builds, run.run_id, d, [other_shape])
    assert info["paired"] == "" and info["ci"].speedup == pytest.approx(31.0 / 19.5, rel=1e-6)
