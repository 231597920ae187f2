"""The search logic on a known world, then end to end on the planted tiny BERT."""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.experiment.conftest import PLANTED_NODE
from workbench.errors import ConfigError
from workbench.experiment.search_core import (
    Candidate,
    SearchSpace,
    Trial,
    Verdict,
    exclude_patterns,
    pareto_front,
    search,
)

# A world with known answers: each node costs accuracy when quantized and saves time.
HARM = {"a": 3.0, "b": 0.2, "c": 1.5, "d": 0.1, "e": 0.05}
SAVE_MS = {"a": 2.0, "b": 1.0, "c": 1.0, "d": 0.5, "e": 0.5}
METHOD_HARM = {"max": 0.0, "entropy": 0.6}


def world_score(c: Candidate) -> Verdict:
    loss = sum(h for n, h in HARM.items() if n not in c.float_nodes)
    loss += METHOD_HARM[c.method] + (0.0 if c.per_channel else 0.3)
    return Verdict(passed=loss <= 1.0, metric=100.0 - loss)


def world_latency(c: Candidate) -> float:
    return (
        10.0
        - sum(s for n, s in SAVE_MS.items() if n not in c.float_nodes)
        + (0.4 if c.per_channel else 0.0)
    )


def test_greedy_then_prune_finds_the_minimal_float_set() -> None:
    ranking = ("a", "c", "b", "d", "e")  # a sensitivity ranking, most harmful first
    space = SearchSpace(methods=("max", "entropy"), per_channel=(True, False), ranking=ranking)
    calls: list[tuple[int, int]] = []
    res = search(space, world_score, world_latency, progress=lambda d, t: calls.append((d, t)))
    assert res.best is not None and res.best.passed
    # max + per-tensor: loss 0.35 + 0.3 with {a, c} float; latency 10 - 2 = 8.0 (fastest passing)
    assert res.best.candidate == Candidate("max", False, ("a", "c"))
    assert res.best.latency_ms == pytest.approx(8.0)
    # pruning removed nothing that was needed and everything that was not
    for t in res.trials:
        if t.passed and t.candidate.method == "max" and t.candidate.per_channel is False:
            assert set(t.candidate.float_nodes) >= {"a", "c"}
    assert [d for d, _ in calls] == list(range(1, res.n_scored + 1))
    assert res.n_timed == sum(math.isfinite(t.latency_ms) for t in res.trials) <= 8


def test_greedy_gives_up_after_max_float() -> None:
    space = SearchSpace(("entropy",), (False,), ranking=("e", "d", "b", "c", "a"), max_float=2)
    res = search(space, world_score, world_latency)
    assert res.best is None
    assert max(len(t.candidate.float_nodes) for t in res.trials) == 2


def test_time_budget_stops_searching_and_names_what_it_cut() -> None:
    """A clock that advances one second per scoring call. 4 s: every start is still scored,
    then nothing more. 6 s: the fastest configuration passes after two greedy steps, is timed
    unpruned, and the others are never searched; ``out_of_time`` names each of them."""
    ranking = ("a", "c", "b", "d", "e")
    space = SearchSpace(methods=("max", "entropy"), per_channel=(True, False), ranking=ranking)
    ticks = [0.0]

    def score(c: Candidate) -> Verdict:
        ticks[0] += 1.0
        return world_score(c)

    full = search(space, world_score, world_latency)
    assert full.out_of_time == [] and full.best is not None
    cut = search(replace(space, time_budget_s=4.0), score, world_latency, clock=lambda: ticks[0])
    starts = [t for t in cut.trials if t.stage == "start"]
    assert len(starts) == 4  # every all-INT8 start is scored and timed regardless
    assert cut.n_scored < full.n_scored
    assert set(cut.out_of_time) == {t.candidate for t in starts} - set(cut.bounded)
    assert cut.best is None  # nothing passed before the budget ran out
    ticks[0] = 0.0
    some = search(replace(space, time_budget_s=6.0), score, world_latency, clock=lambda: ticks[0])
    assert some.best is not None and some.best.stage == "greedy"  # found, then no pruning
    assert set(some.best.candidate.float_nodes) == {"a", "c"}
    assert some.best.candidate.method == "max" and not some.best.candidate.per_channel
    assert set(some.out_of_time) == {t.candidate for t in starts}  # incl. the unpruned one
    generous = search(replace(space, time_budget_s=1e6), score, world_latency, clock=lambda: 0.0)
    assert generous.out_of_time == [] and generous.best == full.best
    with pytest.raises(ConfigError, match="time budget"):
        search(replace(space, time_budget_s=0.0), world_score, world_latency)


def test_pareto_front_drops_dominated_trials() -> None:
    def t(metric: float, ms: float) -> Trial:
        return Trial(Candidate("max", True, (str(metric),)), True, metric, ms, "start")

    front = pareto_front([t(99, 5), t(98, 6), t(97, 4), t(99.5, 8), t(96, 4)])
    assert [(x.metric, x.latency_ms) for x in front] == [(97, 4), (99, 5), (99.5, 8)]


def test_bad_spaces_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        search(SearchSpace((), (True,), ("a",)), world_score, world_latency)
    with pytest.raises(ConfigError, match="repeats"):
        search(SearchSpace(("max",), (True,), ("a", "a")), world_score, world_latency)


def test_exclude_patterns_match_exactly_one_node() -> None:
    names = [
        "/inner/encoder/encoder/layer.1/output/dense/MatMul",
        "/inner/encoder/encoder/layer.11/output/dense/MatMul",
    ]
    (pat,) = exclude_patterns(names[:1])
    assert [bool(re.search(pat, n)) for n in names] == [True, False]


def test_search_on_planted_model_keeps_bad_layer_float_and_passes_gate(planted) -> None:
    """Real builds and real latency: the chosen build excludes the planted layer and passes
    the accuracy gate on a split the search never saw."""
    from workbench.backends.onnxruntime.runner import OrtRunner, open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate
    from workbench.evaluate.latency import measure_latency
    from workbench.evaluate.scorer import model_logits
    from workbench.evaluate.sensitivity import SensitivitySpec, layer_sensitivity, score_logits
    from workbench.fileio import sha256_json

    tables = {
        m: calibrate(planted.onnx_path, planted.calib, m, open_runner=open_ort_runner)
        for m in ("max", "entropy")
    }
    sens = layer_sensitivity(
        planted.onnx_path,
        tables["max"],
        planted.search,
        planted.search_labels,
        SensitivitySpec(proxy_samples=32),
    )
    fp32_search = model_logits(planted.onnx_path, planted.search)
    tmp = Path(tempfile.mkdtemp(prefix="wb-search-"))

    def build(c: Candidate) -> Path:
        out = tmp / f"{sha256_json(c)[:16]}.onnx"
        if not out.is_file():
            write_qdq_model(
                planted.onnx_path,
                tables[c.method],
                out,
                c.per_channel,
                exclude_patterns(c.float_nodes),
            )
        return out

    def passes(scores) -> bool:  # the test gate: accuracy within 3 pts and KL small
        return scores.accuracy >= 0.97 and scores.kl_mean <= 1e-3

    def score(c: Candidate) -> Verdict:
        s = score_logits(model_logits(build(c), planted.search), fp32_search, planted.search_labels)
        return Verdict(passes(s), s.accuracy)

    def latency(c: Candidate) -> float:
        with OrtRunner(build(c)) as r:
            return measure_latency(r, planted.search[0], iterations=20, warmup=3).p50_ms

    space = SearchSpace(("max", "entropy"), (True,), tuple(sens.ranking), max_float=4)
    res = search(space, score, latency)
    start = next(t for t in res.trials if t.candidate == Candidate("max", True))
    assert not start.passed  # all-INT8 fails: the planted layer breaks it
    assert res.best is not None and PLANTED_NODE in res.best.candidate.float_nodes
    assert len(res.best.candidate.float_nodes) <= 2
    gate_fp32 = model_logits(planted.onnx_path, planted.gate)
    gate = score_logits(
        model_logits(build(res.best.candidate), planted.gate), gate_fp32, planted.gate_labels
    )
    assert passes(gate), gate
    assert np.isfinite(res.best.latency_ms) and res.n_timed >= 2


def test_every_kind_of_build_is_a_candidate_and_slow_starts_are_bounded() -> None:
    """Static × dynamic × plain × fused × recovery: each all-INT8 start is scored and timed;
    the fastest passing one wins, and a configuration whose start is no faster than a passing
    build is not searched further."""
    extra = {"dynamic": -4.0, "static": 0.0}  # here dynamic INT8 loses little
    fused_ms, dyn_ms = 1.5, -0.5

    def score(c: Candidate) -> Verdict:
        v = world_score(replace(c, method="max" if c.kind == "dynamic" else c.method))
        loss = 100.0 - v.metric + extra[c.kind] - (0.5 if "smooth" in c.recovery else 0.0)
        return Verdict(loss <= 1.5, 100.0 - loss)

    def latency(c: Candidate) -> float:
        base = world_latency(replace(c, method="max"))
        return base - (fused_ms if c.graph == "fused" else 0.0) + (dyn_ms * (c.kind == "dynamic"))

    space = SearchSpace(
        ("max", "entropy"), (True, False), ("a", "c", "b", "d", "e"), kinds=("static", "dynamic"),
        graphs=("plain", "fused"), recoveries={"static": ((), ("smooth",))},
        graph_nodes={"fused": frozenset("abcde")},
    )  # fmt: skip
    configs = space.configurations()
    assert len(configs) == 2 * (2 * 2 * 2 + 2)  # graphs x (methods x weights x recovery + dyn)
    res = search(space, score, latency)
    starts = {t.candidate for t in res.trials if t.stage == "start"}
    assert starts == set(configs)
    assert all(math.isfinite(t.latency_ms) for t in res.trials if t.stage == "start")
    assert res.best is not None
    assert res.best.candidate == Candidate("dynamic", False, (), "dynamic", "fused")
    passing = [t for t in res.trials if t.passed and math.isfinite(t.latency_ms)]
    assert res.best.latency_ms == min(t.latency_ms for t in passing)
    # dynamic starts pass at once; every static start is slower and was not searched further
    assert set(res.bounded) == {c for c in configs if c.kind == "static"}
    assert {t.stage for t in res.trials} == {"start"}
    for c in res.bounded:
        assert res.trials[[t.candidate for t in res.trials].index(c)].latency_ms >= (
            res.best.latency_ms
        )
    with pytest.raises(ConfigError, match="did you mean 'fused'"):
        search(replace(space, graphs=("fusde",)), score, latency)


def test_recovery_options_offered_only_where_their_module_exists() -> None:
    import importlib.util

    from workbench.experiment.search_builds import RECOVERY_OPTIONS, available_recoveries

    static = available_recoveries("static")
    assert static[0] == ()  # "no recovery" is always a candidate
    installed = {o.name for o in RECOVERY_OPTIONS if importlib.util.find_spec(o.module) is not None}
    static_only = {o.name for o in RECOVERY_OPTIONS if "static" in o.kinds} & installed
    assert {r for (r,) in static[1:]} == static_only  # no pairs for static builds
    dynamic = {o.name for o in RECOVERY_OPTIONS if "dynamic" in o.kinds} & installed
    alone = [r for r in available_recoveries("dynamic")[1:] if len(r) == 1]
    assert {r for (r,) in alone} == dynamic
    assert "smoothquant-0.8" in dynamic and "bias-correction" not in dynamic


def test_starts_are_retimed_interleaved_and_a_load_spike_does_not_decide() -> None:
    """A one-off spike on the fastest start's first timing (another job on the machine) would
    bound it away; timed three times, interleaved, its median puts it first again."""
    calls: dict[Candidate, int] = {}

    def spiky(c: Candidate) -> float:
        calls[c] = calls.get(c, 0) + 1
        spike = 100.0 if c.kind == "dynamic" and calls[c] == 1 else 0.0
        return (3.0 if c.kind == "dynamic" else 5.0) + spike

    def score(c: Candidate) -> Verdict:
        return Verdict(True, 99.0)  # every start passes: the choice is by latency alone

    space = SearchSpace(("max",), (True,), ("a",), kinds=("static", "dynamic"), timing_rounds=3)
    res = search(space, score, spiky)
    assert res.best is not None and res.best.candidate.kind == "dynamic"
    assert res.best.latency_ms == pytest.approx(3.0)
    assert all(n == 3 for n in calls.values())
    calls.clear()
    one = search(replace(space, timing_rounds=1), score, spiky)
    assert one.best is not None and one.best.candidate.kind == "static"  # what noise did
