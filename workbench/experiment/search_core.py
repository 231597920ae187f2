"""Search for the fastest INT8 build that passes: greedy float-keeping from a ranking, then pruning.

Pure logic over two callbacks, so any engine can drive it: ``score(candidate)`` builds and
scores a candidate on the search split and says whether it passes; ``latency(candidate)``
measures it for real. For each (calibration method, weight granularity) the search starts
from everything quantized, keeps the most harmful node groups in float one by one (from the
sensitivity ranking) until the candidate passes, then tries to re-quantize each kept group
(least harmful first). Latency is measured only for the all-INT8 start and the final build of
each configuration; the answer is the fastest passing build and the accuracy × latency front.

A configuration is every kind of build: static (calibration method × weight granularity ×
recovery options such as SmoothQuant or bias correction) and dynamic INT8 (weight
granularity), each on the plain or the fused graph. Every all-INT8 start is scored and timed
first; configurations are then searched fastest start first, and one whose all-INT8 start is
already no faster than a passing build found is not searched further (keeping layers in float
never makes a build faster), so the cost grows with the configurations that can still win.
``SearchSpace.time_budget_s`` bounds the rest: every start is still scored and timed, but no
configuration's search begins (nor a greedy step or prune continues) once the budget is spent;
``SearchResult.out_of_time`` names those configurations so the record can say so.

Example::

    space = SearchSpace(methods=("max", "entropy"), per_channel=(True, False),
                        ranking=tuple(sens.ranking), max_float=8)
    result = search(space, score=my_score, latency=my_latency)
    result.best.candidate, exclude_patterns(result.best.candidate.float_nodes)
"""

from __future__ import annotations

import difflib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from workbench.errors import ConfigError

Progress = Callable[[int, int], None]
KINDS = ("static", "dynamic")
GRAPHS = ("plain", "fused")
DYNAMIC = "dynamic"  # the method of a dynamic candidate (ranges found at run time)


@dataclass(frozen=True)
class Candidate:
    """One build to try: kind, graph, calibration method, weight granularity, recovery options
    and node groups kept in float."""

    method: str  # calibration method; DYNAMIC for kind "dynamic"
    per_channel: bool
    float_nodes: tuple[str, ...] = ()  # ONNX node names, in ranking order
    kind: str = "static"  # "static" (calibrated Q/DQ) | "dynamic" (ranges at run time)
    graph: str = "plain"  # "plain" | "fused" (ORT's fused BERT graph)
    recovery: tuple[str, ...] = ()  # accuracy-recovery options applied, in order

    @property
    def label(self) -> str:
        """``static max per-channel fused +smoothquant-0.5``: what the build is, in one line."""
        parts = [self.kind] + ([self.method] if self.kind != DYNAMIC else [])
        parts.append("per-channel" if self.per_channel else "per-tensor")
        parts += [self.graph] if self.graph != "plain" else []
        return " ".join(parts + [f"+{r}" for r in self.recovery])


@dataclass(frozen=True)
class Verdict:
    """What the scoring callback says of a candidate on the search split."""

    passed: bool
    metric: float  # higher is better (e.g. accuracy or agreement with FP32)


@dataclass(frozen=True)
class Trial:
    """A scored candidate; ``latency_ms`` is NaN where it was not measured."""

    candidate: Candidate
    passed: bool
    metric: float
    latency_ms: float
    stage: str  # "start" | "greedy" | "prune"


@dataclass(frozen=True)
class SearchSpace:
    """What the search may vary."""

    methods: tuple[str, ...]
    per_channel: tuple[bool, ...]
    ranking: tuple[str, ...]  # node groups, most harmful first
    max_float: int = 8  # most node groups kept in float before a configuration is given up
    rankings: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per method, optional
    kinds: tuple[str, ...] = ("static",)
    graphs: tuple[str, ...] = ("plain",)
    recoveries: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)  # per kind
    graph_nodes: dict[str, frozenset[str]] = field(default_factory=dict)  # nodes a graph has
    timing_rounds: int = 1  # starts timed this many times, interleaved (median): load-robust
    time_budget_s: float | None = None  # after the starts: searching stops once this is spent

    def ranking_for(self, method: str, graph: str = "plain") -> tuple[str, ...]:
        """The method's ranking, without node groups the graph does not have (fusion)."""
        rank = self.rankings.get(method, self.ranking)
        have = self.graph_nodes.get(graph)
        return rank if have is None else tuple(n for n in rank if n in have)

    def configurations(self) -> list[Candidate]:
        """Every all-INT8 start: kinds × graphs × methods × granularity × recovery options."""
        out = []
        for graph in self.graphs:
            for kind in self.kinds:
                methods = self.methods if kind == "static" else (DYNAMIC,)
                for method in methods:
                    for pc in self.per_channel:
                        for rec in self.recoveries.get(kind, ((),)):
                            out.append(Candidate(method, pc, (), kind, graph, tuple(rec)))
        return out


@dataclass(frozen=True)
class SearchResult:
    """Every trial, the accuracy × latency Pareto front and the fastest passing build."""

    trials: list[Trial]
    pareto: list[Trial]
    best: Trial | None
    n_scored: int
    n_timed: int
    bounded: list[Candidate] = field(default_factory=list)  # starts no faster than a pass found
    out_of_time: list[Candidate] = field(default_factory=list)  # not (fully) searched: budget


def check_space(space: SearchSpace) -> None:
    """Raise ConfigError for a space that cannot be searched."""
    if not space.methods or not space.per_channel:
        raise ConfigError("the search needs at least one calibration method and granularity")
    if space.max_float < 0:
        raise ConfigError(f"max_float must be >= 0, got {space.max_float}")
    if space.time_budget_s is not None and not space.time_budget_s > 0:
        raise ConfigError(f"time budget must be > 0 seconds, got {space.time_budget_s}")
    check_kinds(space.kinds, space.graphs)
    for method in space.methods:
        rank = space.ranking_for(method)
        if len(set(rank)) != len(rank):
            raise ConfigError(f"the ranking for {method} repeats node groups; pass each once")


def check_kinds(kinds: Sequence[str], graphs: Sequence[str]) -> None:
    """ConfigError naming the first unknown (or missing) build kind or graph."""
    for what, got, known in (("kind", kinds, KINDS), ("graph", graphs, GRAPHS)):
        bad = [g for g in got if g not in known] or ([] if got else ["(none)"])
        if bad:
            close = difflib.get_close_matches(bad[0], known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"search {what} {bad[0]!r} unknown; {hint}use {', '.join(known)}")


def search(
    space: SearchSpace,
    score: Callable[[Candidate], Verdict],
    latency: Callable[[Candidate], float],
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Greedy float-keeping, then pruning, per configuration; fastest passing build wins."""
    check_space(space)
    state = _State(score, latency, progress, _budget(space))
    budget = math.inf if space.time_budget_s is None else space.time_budget_s
    t0 = clock()
    state.out_of_time = lambda: clock() - t0 >= budget
    for cfg in space.configurations():
        state.try_(cfg, "start")
        state.time(cfg)
    state.retime(space.configurations(), space.timing_rounds - 1)
    starts = [state.trials[cfg] for cfg in space.configurations()]
    bounded, cut = [], []
    for start in sorted(starts, key=lambda t: t.latency_ms):
        if start.passed:  # nothing kept in float: already the configuration's answer
            continue
        best = _fastest_passing(state.trials.values())
        if best is not None and best.latency_ms <= start.latency_ms:
            bounded.append(start.candidate)
        elif state.out_of_time() or not _search_one(state, space, start.candidate):
            cut.append(start.candidate)
    trials = list(state.trials.values())
    timed = [t for t in trials if math.isfinite(t.latency_ms)]
    best = _fastest_passing(timed)
    front = pareto_front(timed)
    return SearchResult(trials, front, best, state.n_scored, len(timed), bounded, cut)


def _fastest_passing(trials) -> Trial | None:
    passing = [t for t in trials if t.passed and math.isfinite(t.latency_ms)]
    return min(passing, key=_speed_key, default=None)


def _search_one(state: _State, space: SearchSpace, cfg: Candidate) -> bool:
    """Greedy float-keeping from the all-INT8 start ``cfg`` (already scored), then pruning;
    False when the time budget ran out before the configuration's search was done."""
    ranking = space.ranking_for(cfg.method, cfg.graph)
    trial = state.trials[cfg]
    kept: list[str] = []
    for node in ranking[: space.max_float]:
        if trial.passed:
            break
        if state.out_of_time():
            return False
        kept.append(node)
        trial = state.try_(replace(cfg, float_nodes=tuple(kept)), "greedy")
    if not trial.passed:
        return True
    done = True
    for node in reversed(list(kept)):
        if state.out_of_time():  # a passing build is found: time it, not fully pruned
            done = False
            break
        fewer = [k for k in kept if k != node]
        attempt = state.try_(replace(cfg, float_nodes=tuple(fewer)), "prune")
        if attempt.passed:
            kept = fewer
    state.time(replace(cfg, float_nodes=tuple(kept)))
    return done


def pareto_front(trials: Sequence[Trial]) -> list[Trial]:
    """Trials no other trial beats on both metric (higher) and latency (lower), fastest first."""
    front: list[Trial] = []
    for t in trials:
        dominated = any(
            o.metric >= t.metric
            and o.latency_ms <= t.latency_ms
            and (o.metric > t.metric or o.latency_ms < t.latency_ms)
            for o in trials
        )
        if not dominated and all(f.candidate != t.candidate for f in front):
            front.append(t)
    return sorted(front, key=_speed_key)


def exclude_patterns(float_nodes: Sequence[str]) -> list[str]:
    """``[calibration] exclude`` entries (anchored regexes) that keep exactly these nodes float."""
    return [f"^{re.escape(n)}$" for n in float_nodes]


def _speed_key(t: Trial) -> tuple[float, float, int, str, str]:
    c = t.candidate
    return (t.latency_ms, -t.metric, len(c.float_nodes), c.method, c.label)


def _budget(space: SearchSpace) -> int:
    """Upper bound of scoring calls, for the progress total."""
    return sum(
        1 + 2 * min(space.max_float, len(space.ranking_for(c.method, c.graph)))
        for c in space.configurations()
    )


class _State:
    """Memoised scoring and timing, with progress."""

    def __init__(self, score, latency, progress: Progress | None, total: int) -> None:
        self._score, self._latency, self._progress = score, latency, progress
        self.total = total
        self.trials: dict[Candidate, Trial] = {}
        self.n_scored = 0
        self.out_of_time: Callable[[], bool] = lambda: False

    def try_(self, cand: Candidate, stage: str) -> Trial:
        if cand not in self.trials:
            verdict = self._score(cand)
            self.trials[cand] = Trial(cand, verdict.passed, verdict.metric, math.nan, stage)
            self.n_scored += 1
            if self._progress:
                self._progress(self.n_scored, max(self.total, self.n_scored))
        return self.trials[cand]

    def retime(self, cands: list[Candidate], rounds: int) -> None:
        """Time ``cands`` ``rounds`` more times, interleaved; keep each one's median: the order
        of the starts then survives a machine whose load changes while it searches."""
        if rounds < 1:
            return
        samples = {c: [self.trials[c].latency_ms] for c in cands}
        for _ in range(rounds):
            for c in cands:
                samples[c].append(float(self._latency(c)))
        for c, ms in samples.items():
            t = self.trials[c]
            self.trials[c] = Trial(c, t.passed, t.metric, float(np.median(ms)), t.stage)

    def time(self, cand: Candidate) -> None:
        t = self.trials[cand]
        if not math.isfinite(t.latency_ms):
            ms = float(self._latency(cand))
            self.trials[cand] = Trial(cand, t.passed, t.metric, ms, t.stage)
