"""Paired, interleaved latency: ratio, CI and starved blocks on planted timings; a real run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from workbench.evaluate.paired import (
    BASELINE,
    CANDIDATE,
    MachineLoad,
    PairedConfig,
    PairedTarget,
    expected_threads,
    mark_starved,
    measure_paired,
    round_ratios,
    summarize_paired,
)
from workbench.results.records import PairedBlock

QUIET = MachineLoad(cores=4, steal_pct=0.0, threads=2)


def _blocks(base_ms, cand_ms, cpu_share=None, busy=0, runs=(2, 3)) -> list[PairedBlock]:
    """Rounds of (baseline, candidate) blocks; per-run times given, CPU = 2 threads x wall."""
    cpu_share = cpu_share or {}
    out = []
    for r, (b, c) in enumerate(zip(base_ms, cand_ms, strict=True)):
        for side, per_run, n in ((BASELINE, b, runs[0]), (CANDIDATE, c, runs[1])):
            wall = per_run * n
            cpu = wall * 2.0 * cpu_share.get((r, side), 1.0)
            out.append(PairedBlock(r, side, n, wall, cpu, busy, False))
    return out


def test_ratio_is_geometric_mean_of_round_ratios_with_ci_around_it():
    rng = np.random.default_rng(1)
    base = 100 * np.exp(rng.normal(0, 0.05, 20))
    cand = 50 * np.exp(rng.normal(0, 0.05, 20))
    rec = summarize_paired(("fp32", "int8"), (8, 128), _blocks(base, cand), QUIET, PairedConfig())
    expected = float(np.exp(np.mean(np.log(base / cand))))
    assert rec.ratio == pytest.approx(expected)
    assert rec.ci_low < rec.ratio < rec.ci_high
    assert rec.ci_low > 1.7 and rec.ci_high < 2.3
    assert (rec.blocks_used, rec.blocks_dropped, rec.contended, rec.reason) == (40, 0, False, "")
    assert rec.cpu_per_wall == pytest.approx(2.0)
    again = summarize_paired(("fp32", "int8"), (8, 128), _blocks(base, cand), QUIET, PairedConfig())
    assert (again.ci_low, again.ci_high) == (rec.ci_low, rec.ci_high)  # seeded


def test_ratio_uses_time_per_run_not_block_time():
    rec = summarize_paired(
        ("a", "b"), (1, 16), _blocks([10.0] * 5, [10.0] * 5, runs=(1, 4)), QUIET, PairedConfig()
    )
    assert rec.ratio == pytest.approx(1.0) and rec.ci_low == rec.ci_high == pytest.approx(1.0)


def test_starved_block_is_dropped_with_its_partner_and_counted():
    base, cand = [100.0] * 10, [50.0] * 10
    base[3] = 400.0  # a descheduled block: 4x the wall time at the same CPU time (0.5 of 2)
    blocks = _blocks(base, cand, cpu_share={(3, BASELINE): 0.25})
    marked = mark_starved(blocks, 0.6, 2)
    assert [(b.round, b.build) for b in marked if b.starved] == [(3, BASELINE)]
    ratios, used = round_ratios(marked)
    assert len(ratios) == 9 and len(used) == 18 and all(r == pytest.approx(2.0) for r in ratios)
    rec = summarize_paired(("a", "b"), (1, 16), blocks, QUIET, PairedConfig())
    assert rec.ratio == pytest.approx(2.0) and rec.blocks_dropped == 1 and not rec.contended


def test_busy_machine_is_contended_and_says_why():
    blocks = _blocks([100.0] * 6, [50.0] * 6, busy=3)
    rec = summarize_paired(("a", "b"), (1, 16), blocks, MachineLoad(2, 0.0, 2), PairedConfig())
    assert rec.contended and rec.load_avg == 3.0
    assert rec.reason == "load 3.0 on 2 cores, 0 of 12 blocks starved"
    starve = {(r, BASELINE): 0.2 for r in range(5)}
    many_starved = _blocks([100.0] * 8, [50.0] * 8, cpu_share=starve)
    rec = summarize_paired(("a", "b"), (1, 16), many_starved, QUIET, PairedConfig())
    assert rec.contended and rec.reason == "load 0.0 on 4 cores, 5 of 16 blocks starved"
    steal = summarize_paired(
        ("a", "b"), (1, 16), blocks[:4], MachineLoad(8, 30.0, 2), PairedConfig()
    )
    assert (
        steal.contended
        and "CPU steal 30%" in steal.reason
        and "only 2 clean rounds" in steal.reason
    )
    assert steal.ci_low == 0.0  # too few rounds: the interval decides nothing


def test_real_interleaved_measurement_of_two_onnx_sessions(tiny_model, tiny_onnx, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workbench.backends.registry import Artifact, BuildRequest

    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(tiny_onnx), str(int8), weight_type=QuantType.QInt8)

    def target(name: str, path) -> PairedTarget:
        req = BuildRequest(
            name=name, backend="onnxruntime", device="cpu", precision="fp32", compile=False,
            cuda_graphs=False, fp32_onnx=str(tiny_onnx), torch_model="",
            tokenizer_file=str(tiny_model.encoder_dir / "tokenizer.json"), max_length=16,
            table_file="", method="max", calibrator="workbench", per_channel=True, exclude=(),
            cache_dir="",
        )  # fmt: skip
        return PairedTarget(req, Artifact(str(path), "sha", name))

    cfg = PairedConfig(rounds=6, block_ms=5.0, warmup=2)
    rec = measure_paired(target("fp32", tiny_onnx), target("int8", int8), (2, 16), 1, cfg)
    assert (rec.baseline, rec.candidate, rec.batch, rec.seq) == ("fp32", "int8", 2, 16)
    assert len(rec.blocks) == 12
    for r in range(6):  # every round holds one block of each build
        assert sorted(b.build for b in rec.blocks if b.round == r) == [BASELINE, CANDIDATE]
    assert all(b.iterations >= 1 and b.wall_ms > 0 and b.cpu_ms >= 0 for b in rec.blocks)
    assert rec.blocks_used + sum(1 for b in rec.blocks if not b.starved) >= rec.blocks_used
    assert rec.blocks_dropped == sum(b.starved for b in rec.blocks)
    ratios, used = round_ratios(rec.blocks)
    assert len(used) == rec.blocks_used == 2 * len(ratios)
    if len(ratios) >= 3:
        assert rec.ci_low <= rec.ratio <= rec.ci_high
    assert math.isfinite(rec.ratio) and (rec.ratio > 0) == (rec.blocks_used > 0)
    assert rec.contended or rec.blocks_used >= 6  # a busy machine may starve every block
    raw, _ = round_ratios([replace(b, starved=False) for b in rec.blocks])
    assert len(raw) == 6 and all(r > 0 for r in raw) and rec.cores >= 1


def test_starved_means_below_the_expected_thread_use_not_below_the_others():
    uniformly_slow = _blocks(
        [100.0] * 6,
        [50.0] * 6,
        cpu_share={(r, s): 0.3 for r in range(6) for s in (BASELINE, CANDIDATE)},
    )
    rec = summarize_paired(("a", "b"), (1, 16), uniformly_slow, QUIET, PairedConfig())
    assert rec.blocks_dropped == 12 and rec.blocks_used == 0 and rec.contended
    assert rec.ci_low == 0.0  # nothing left to judge: the speed rule cannot PASS or FAIL
    assert (
        expected_threads(0, 2) == 2 and expected_threads(1, 2) == 1 and expected_threads(8, 2) == 2
    )
