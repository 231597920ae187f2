"""Paired, interleaved latency: a speed-up that load on a shared machine cannot fake.

Both builds stay warm in their own child processes (each with its own threads); the parent
then asks them for short blocks of runs in alternation, the order drawn at random each round,
so load that comes and goes hits both builds in the same time window. The speed-up is the
geometric mean of the per-round ratios (baseline time per run / candidate time per run) with
a seeded bootstrap CI. Each block also records the child's CPU time next to its wall time and
how many other tasks were runnable; a block whose CPU/wall falls well below the build's thread
count was descheduled ("starved") and is dropped with its round's partner.

Example::

    rec = measure_paired(PairedTarget(base_req, base_art), PairedTarget(cand_req, cand_art),
                         (8, 128), threads=0)
    print(rec.ratio, rec.ci_low, rec.ci_high, rec.contended)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from workbench.backends.registry import Artifact, BuildRequest
from workbench.errors import ConfigError
from workbench.results.records import PairedBlock, PairedSpeedup

BASELINE, CANDIDATE = "baseline", "candidate"
UNBOUNDED = 1e6  # CI upper end when too few rounds survive: an interval that decides nothing


@dataclass(frozen=True)
class PairedConfig:
    """How long to time and when a measurement counts as contended."""

    rounds: int = 20  # timed rounds, each one block per build
    block_ms: float = 150.0  # target wall time of one block (runs per block set from warm-up)
    warmup: int = 5  # untimed runs in each child before the first block
    warmup_rounds: int = 1  # untimed alternating rounds (the switch between processes settles)
    starve_fraction: float = 0.6  # CPU/wall below this share of the expected threads: starved
    max_load_per_core: float = 0.5  # mean other runnable tasks per core above this: contended
    max_steal_pct: float = 10.0
    max_starved_share: float = 0.25  # share of starved blocks above this: contended
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 3 or self.block_ms <= 0 or self.warmup < 1:
            raise ConfigError("paired timing needs rounds >= 3, block_ms > 0 and warmup >= 1")


@dataclass(frozen=True)
class PairedTarget:
    """One side of a pair: a built artifact, opened through the backend registry."""

    request: BuildRequest
    artifact: Artifact


@dataclass(frozen=True)
class MachineLoad:
    """The machine around a measurement and the thread use a build has when it is not
    descheduled (its intra-op threads, at most the cores)."""

    cores: int
    steal_pct: float
    threads: int


def expected_threads(threads: int, cores: int) -> int:
    """Threads a build keeps busy when it has the machine (``threads`` 0: every core)."""
    return max(1, min(threads or cores, cores))


def mark_starved(blocks: Sequence[PairedBlock], fraction: float, threads: int) -> list[PairedBlock]:
    """Flag blocks whose CPU/wall is below ``fraction`` of the expected thread use: the
    process was descheduled for part of the block, so its time measures the machine."""
    floor = fraction * threads
    return [replace(b, starved=b.wall_ms <= 0 or b.cpu_ms / b.wall_ms < floor) for b in blocks]


def round_ratios(blocks: Sequence[PairedBlock]) -> tuple[list[float], list[PairedBlock]]:
    """Per-round ratios (baseline ms per run / candidate ms per run) of rounds with no starved
    block, and the blocks those rounds used."""
    rounds: dict[int, dict[str, PairedBlock]] = {}
    for b in blocks:
        rounds.setdefault(b.round, {})[b.build] = b
    ratios, used = [], []
    for r in sorted(rounds):
        pair = rounds[r]
        if len(pair) != 2 or any(b.starved for b in pair.values()):
            continue
        base, cand = pair[BASELINE], pair[CANDIDATE]
        ratios.append((base.wall_ms / base.iterations) / (cand.wall_ms / cand.iterations))
        used += [base, cand]
    return ratios, used


def ratio_ci(ratios: Sequence[float], cfg: PairedConfig) -> tuple[float, float, float]:
    """Geometric-mean ratio and its seeded bootstrap CI (BCa; percentile when BCa degenerates)."""
    from scipy import stats

    if len(ratios) < 3:
        est = float(np.exp(np.mean(np.log(ratios)))) if ratios else 0.0
        return est, 0.0, UNBOUNDED
    logs = np.log(np.asarray(ratios, dtype=float))
    est = float(np.exp(logs.mean()))
    if np.ptp(logs) == 0:
        return est, est, est
    for method in ("BCa", "percentile"):
        res = stats.bootstrap(
            (logs,),
            np.mean,
            n_resamples=cfg.resamples,
            confidence_level=cfg.confidence,
            method=method,
            rng=np.random.default_rng(cfg.seed),
        )
        lo, hi = res.confidence_interval
        if math.isfinite(lo) and math.isfinite(hi):
            return est, float(np.exp(lo)), float(np.exp(hi))
    return est, float(np.exp(logs.min())), float(np.exp(logs.max()))


def summarize_paired(
    names: tuple[str, str],
    shape: tuple[int, int],
    blocks: Sequence[PairedBlock],
    machine: MachineLoad,
    cfg: PairedConfig,
) -> PairedSpeedup:
    """The paired record from raw blocks: starved blocks marked, ratio, CI and contention."""
    marked = mark_starved(blocks, cfg.starve_fraction, machine.threads)
    ratios, used = round_ratios(marked)
    ratio, lo, hi = ratio_ci(ratios, cfg)
    starved = sum(b.starved for b in marked)
    load = float(np.mean([b.others_running for b in marked])) if marked else 0.0
    use = [b.cpu_ms / b.wall_ms for b in used if b.wall_ms > 0]
    why = []
    if load > cfg.max_load_per_core * machine.cores:
        why.append("load")
    if machine.steal_pct > cfg.max_steal_pct:
        why.append("steal")
    if starved > cfg.max_starved_share * max(len(marked), 1):
        why.append("starved")
    if len(ratios) < 3:
        why.append("rounds")
    reason = ""
    if why:
        reason = (
            f"load {load:.1f} on {machine.cores} cores, {starved} of {len(marked)} blocks starved"
        )
        reason += f", CPU steal {machine.steal_pct:.0f}%" if "steal" in why else ""
        reason += f", only {len(ratios)} clean rounds" if "rounds" in why else ""
    return PairedSpeedup(
        baseline=names[0],
        candidate=names[1],
        batch=shape[0],
        seq=shape[1],
        ratio=ratio,
        ci_low=lo,
        ci_high=hi,
        confidence=cfg.confidence,
        blocks_used=len(used),
        blocks_dropped=starved,
        load_avg=load,
        steal_pct=machine.steal_pct,
        cpu_per_wall=float(np.median(use)) if use else 0.0,
        cores=machine.cores,
        contended=bool(why),
        reason=reason,
        blocks=marked,
    )


def others_running() -> int:
    """Runnable tasks on the machine now, not counting the caller (Linux /proc/loadavg;
    elsewhere the 1-minute load average)."""
    try:
        running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        return max(int(running) - 1, 0)
    except (OSError, IndexError, ValueError):
        return round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0


def cpu_ticks() -> tuple[float, float]:
    """(steal, total) CPU time of the whole machine so far (psutil; steal is 0 off Linux)."""
    import psutil

    t = psutil.cpu_times()
    return float(getattr(t, "steal", 0.0)), float(sum(t))


def measure_paired(
    base: PairedTarget,
    cand: PairedTarget,
    shape: tuple[int, int],
    threads: int = 0,
    cfg: PairedConfig | None = None,
) -> PairedSpeedup:
    """Time ``base`` and ``cand`` warm, each in its own process, in alternating blocks."""
    from workbench.evaluate.isolated import BuildProcess, LatencySpec

    cfg = cfg or PairedConfig()
    rng = np.random.default_rng(cfg.seed)
    blocks: list[PairedBlock] = []
    specs = {
        side: LatencySpec(t.request, t.artifact, [shape], 0, cfg.warmup, 0.0, threads)
        for side, t in ((BASELINE, base), (CANDIDATE, cand))
    }
    with BuildProcess(specs[BASELINE]) as pb, BuildProcess(specs[CANDIDATE]) as pc:
        procs = {BASELINE: pb, CANDIDATE: pc}
        runs = {s: max(1, round(cfg.block_ms / max(p.run_ms, 1e-3))) for s, p in procs.items()}
        steal0, total0 = cpu_ticks()
        for r in range(-cfg.warmup_rounds, cfg.rounds):
            for side in rng.permutation([BASELINE, CANDIDATE]):
                busy = others_running()
                wall_ns, cpu_ns = procs[side].run_block(runs[side])
                if r >= 0:
                    blocks.append(
                        PairedBlock(
                            r, str(side), runs[side], wall_ns / 1e6, cpu_ns / 1e6, busy, False
                        )
                    )
        steal1, total1 = cpu_ticks()
    steal = 100.0 * (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0
    cores = os.cpu_count() or 1
    machine = MachineLoad(cores, steal, expected_threads(threads, cores))
    names = (base.request.name, cand.request.name)
    return summarize_paired(names, shape, blocks, machine, cfg)
