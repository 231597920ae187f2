"""Search for the fastest INT8 build that passes: greedy float-keeping from a ranking, then pruning.

Pure logic over two callbacks, so any engine can drive it: ``score(candidate)`` builds and
scores a candidate on the search split and says whether it passes; ``latency(candidate)``
measures it for real. For each (calibration method, weight granularity) the search starts
from everything quantized, keeps the most harmful node groups in float one by one (from the
sensitivity ranking) until the candidate passes, then tries to re-quantize each kept group
(least harmful first). Latency is measured only for the all-INT8 start and the final build of
each configuration; the answer is the fastest passing build and the accuracy × latency front.

Example::

    space = SearchSpace(methods=("max", "entropy"), per_channel=(True, False),
                        ranking=tuple(sens.ranking), max_float=8)
    result = search(space, score=my_score, latency=my_latency)
    result.best.candidate, exclude_patterns(result.best.candidate.float_nodes)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from workbench.errors import ConfigError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Candidate:
    """One build to try: calibration method, weight granularity, node groups kept in float."""

    method: str
    per_channel: bool
    float_nodes: tuple[str, ...] = ()  # ONNX node names, in ranking order


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

    def ranking_for(self, method: str) -> tuple[str, ...]:
        return self.rankings.get(method, self.ranking)


@dataclass(frozen=True)
class SearchResult:
    """Every trial, the accuracy × latency Pareto front and the fastest passing build."""

    trials: list[Trial]
    pareto: list[Trial]
    best: Trial | None
    n_scored: int
    n_timed: int


def check_space(space: SearchSpace) -> None:
    """Raise ConfigError for a space that cannot be searched."""
    if not space.methods or not space.per_channel:
        raise ConfigError("the search needs at least one calibration method and granularity")
    if space.max_float < 0:
        raise ConfigError(f"max_float must be >= 0, got {space.max_float}")
    for method in space.methods:
        rank = space.ranking_for(method)
        if len(set(rank)) != len(rank):
            raise ConfigError(f"the ranking for {method} repeats node groups; pass each once")


def search(
    space: SearchSpace,
    score: Callable[[Candidate], Verdict],
    latency: Callable[[Candidate], float],
    progress: Progress | None = None,
) -> SearchResult:
    """Greedy float-keeping, then pruning, per configuration; fastest passing build wins."""
    check_space(space)
    state = _State(score, latency, progress, _budget(space))
    for method in space.methods:
        for per_channel in space.per_channel:
            _search_one(state, space, method, per_channel)
    trials = list(state.trials.values())
    timed = [t for t in trials if math.isfinite(t.latency_ms)]
    passing = [t for t in timed if t.passed]
    best = min(passing, key=_speed_key, default=None)
    return SearchResult(trials, pareto_front(timed), best, state.n_scored, len(timed))


def _search_one(state: _State, space: SearchSpace, method: str, per_channel: bool) -> None:
    ranking = space.ranking_for(method)
    start = state.try_(Candidate(method, per_channel), "start")
    state.time(start.candidate)
    kept: list[str] = []
    trial = start
    for node in ranking[: space.max_float]:
        if trial.passed:
            break
        kept.append(node)
        trial = state.try_(Candidate(method, per_channel, tuple(kept)), "greedy")
    if not trial.passed:
        return
    for node in reversed(list(kept)):
        fewer = [k for k in kept if k != node]
        attempt = state.try_(Candidate(method, per_channel, tuple(fewer)), "prune")
        if attempt.passed:
            kept = fewer
    state.time(Candidate(method, per_channel, tuple(kept)))


def pareto_front(trials: Sequence[Trial]) -> list[Trial]:
    """Trials no other trial beats on both metric (higher) and latency (lower), fastest first."""
    front = []
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


def _speed_key(t: Trial) -> tuple[float, float, int, str, bool]:
    c = t.candidate
    return (t.latency_ms, -t.metric, len(c.float_nodes), c.method, not c.per_channel)


def _budget(space: SearchSpace) -> int:
    """Upper bound of scoring calls, for the progress total."""
    n = sum(1 + 2 * min(space.max_float, len(space.ranking_for(m))) for m in space.methods)
    return n * len(space.per_channel)


class _State:
    """Memoised scoring and timing, with progress."""

    def __init__(self, score, latency, progress: Progress | None, total: int) -> None:
        self._score, self._latency, self._progress = score, latency, progress
        self.total = total
        self.trials: dict[Candidate, Trial] = {}
        self.n_scored = 0

    def try_(self, cand: Candidate, stage: str) -> Trial:
        if cand not in self.trials:
            verdict = self._score(cand)
            self.trials[cand] = Trial(cand, verdict.passed, verdict.metric, math.nan, stage)
            self.n_scored += 1
            if self._progress:
                self._progress(self.n_scored, max(self.total, self.n_scored))
        return self.trials[cand]

    def time(self, cand: Candidate) -> None:
        t = self.trials[cand]
        if not math.isfinite(t.latency_ms):
            ms = float(self._latency(cand))
            self.trials[cand] = Trial(cand, t.passed, t.metric, ms, t.stage)
