"""The demo's whole story: the run's verdict on the all-INT8 build and, when it does not PASS,
the search for the fastest build that does (the same ``run_search`` as ``workbench search``).

The answer is one ``Recommendation``: the build to use, its speed-up over the gate's baseline
with a 95% bootstrap interval, and the judge's verdict on rows the search never saw -- or,
honestly, that no build passes and what would help.

Example::

    run, run_dir = run_experiment(exp, RunOptions())
    rec = recommend(run, run_dir, StoryOptions())
    print(rec.lines()[-1]); sys.exit(rec.exit_code)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.results.gate import INCONCLUSIVE, load_decision
from workbench.results.records import LatencyResult, RunResult

if TYPE_CHECKING:
    from workbench.report.latency import SpeedupCI
    from workbench.results.gate import GateDecision
    from workbench.results.search import SearchRecord, TrialRecord
    from workbench.results.spec import Experiment

log = logging.getLogger(__name__)

EXIT = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 4}
QUICK_METHODS, QUICK_MAX_FLOAT = ("max",), 4  # --quick: a short look (a few minutes on 2 cores)


@dataclass(frozen=True)
class StoryOptions:
    """Where the search writes its calibration sets, how hard it looks, and progress."""

    calibration_root: str = "calibration_sets"
    methods: tuple[str, ...] = ("max", "entropy")
    max_float: int = 8
    progress: bool = True
    timing_rounds: int = 3  # FP32 and the choice timed interleaved, for the speed-up's CI


@dataclass(frozen=True)
class Recommendation:
    """The build the demo recommends (``build`` is "" when none passes) and why."""

    source: str  # "run": the gated build as configured; "search": the search's choice
    build: str
    verdict: str  # the judge's verdict on the recommended build: PASS | FAIL | INCONCLUSIVE
    baseline: str
    speedup: SpeedupCI | None  # baseline p50 / build p50 at the gate's shape
    shape: tuple[int, int]
    reasons: list[str]  # the judge's reasons (first: the one that decided)
    helps: list[str]  # what would settle or fix it, when not PASS
    search_dir: str  # "" when no search ran

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL (or no build passes), 4 INCONCLUSIVE: the recommended build's."""
        return EXIT[self.verdict]

    def lines(self) -> list[str]:
        """The demo's closing lines; the last one carries the verdict."""
        out = []
        if self.search_dir:
            out.append(f"search: {Path(self.search_dir) / 'search.html'}")
        if self.build:
            out.append(f"recommended build: {self.build}")
            if self.source == "search":
                out.append(f"  its settings: {Path(self.search_dir) / 'exclude.toml'}")
            if self.speedup is not None:
                s, (b, q) = self.speedup, self.shape
                out.append(
                    f"  speed-up ×{s.speedup:.2f} vs {self.baseline} (95% CI ×{s.low:.2f}–"
                    f"×{s.high:.2f}) at batch {b} × seq {q}, timed side by side on this machine"
                )
        else:
            out.append("no INT8 build passes the gate on this data")
        out += [f"  {r}" for r in self.reasons[:3]]
        if self.helps:
            out.append("what would help:")
            out += [f"  - {h}" for h in self.helps]
        if not self.build:
            out.append(
                f"demo {self.verdict}: no INT8 build passes the gate (what would help: above)"
            )
            return out
        s = self.speedup
        speed = (
            f", ×{s.speedup:.2f} (95% CI ×{s.low:.2f}–×{s.high:.2f}) vs {self.baseline}"
            if s
            else ""
        )
        out.append(f"demo {self.verdict}: {self.build}{speed}")
        return out


def gate_decision(run: RunResult, run_dir: str | Path) -> GateDecision | None:
    """The judge's decision on the run's first gated build; None when the run had no gate."""
    gate_file = Path(run_dir) / "gate.json"
    if not (run.experiment.gate.enabled and gate_file.is_file()):
        return None
    return load_decision(gate_file)


def recommend(run: RunResult, run_dir: str | Path, opts: StoryOptions) -> Recommendation | None:
    """The gated build if the judge PASSes it, else the search's choice (or none); the gated
    build stays, INCONCLUSIVE, when it was INCONCLUSIVE and the search finds only FAILs or
    nothing (too few rows is not a failure). None when the run had no gate to judge by."""
    run_dir = Path(run_dir)
    d = gate_decision(run, run_dir)
    if d is None:
        return None
    policy = d.policy
    shape = (policy.latency_batch, policy.latency_seq)
    base, cand = d.baseline.split("/")[-1], d.candidate.split("/")[-1]
    if d.verdict == "PASS":
        ci = _run_speedup(run, base, cand, shape)
        return Recommendation("run", cand, "PASS", base, ci, shape, [], [], "")
    busy = _only_a_busy_machine(d)
    if busy:  # every accuracy rule passed; the search would time on the same busy machine
        ci = _run_speedup(run, base, cand, shape)
        helps = [f"{busy}; every other rule passed, so no search ran (it would time its "
                 "candidates on the same machine)"]  # fmt: skip
        return Recommendation("run", cand, "INCONCLUSIVE", base, ci, shape, d.reasons, helps, "")
    exp = replace(run.experiment, gate=replace(run.experiment.gate, policy=policy))
    record, out = _search(exp, run_dir / "search", opts)
    g, b = record.gate_check, record.best
    if d.verdict == "INCONCLUSIVE" and (b is None or g is None or g.verdict == "FAIL"):
        # the search found nothing better than a FAIL, but the gated build was only
        # INCONCLUSIVE (too few rows to tell), not shown to fail: the verdict stays its own
        # (decided before timing the search's choice, which would not be recommended)
        found = f"its choice {_choice_name(b)} FAILs on its gate half" if b else "no build passes"
        reasons = [
            *([f"judged on the whole test split: {d.reasons[0]}"] if d.reasons else []),
            f"the search ({record.n_search} rows to search on) found nothing better: {found}",
        ]
        ci = _run_speedup(run, base, cand, shape)
        helps = what_would_help(record, run.experiment)
        return Recommendation(
            "run", cand, "INCONCLUSIVE", base, ci, shape, reasons, helps, str(out)
        )
    return _from_search(record, out, run, base, shape, opts)


def _search(exp: Experiment, out: Path, opts: StoryOptions) -> tuple[SearchRecord, Path]:
    from workbench.experiment.search import SearchOptions, run_search

    methods, max_float = opts.methods, opts.max_float
    if exp.quick:
        methods, max_float = QUICK_METHODS, min(max_float, QUICK_MAX_FLOAT)
    so = SearchOptions(
        out_dir=str(out),
        calibration_root=opts.calibration_root,
        methods=methods,
        max_float=max_float,
        progress=opts.progress,
        recovery=not exp.quick,  # --quick: every kind of build, no recovery passes
        # the demo must end in tens of minutes on 2 cores: a strict search of the full demo
        # (44 configurations; none PASSes its 1,275-row half, so each is searched to
        # max_float) was not done after 40 minutes beside the test suite (load ~3.5)
        strict=False,
    )
    return run_search(exp, so)


def _from_search(
    record: SearchRecord,
    out: Path,
    run: RunResult,
    base: str,
    shape: tuple[int, int],
    opts: StoryOptions,
) -> Recommendation:
    helps = what_would_help(record, run.experiment)
    g, b = record.gate_check, record.best
    if b is None or g is None:
        why = [
            f"the all-INT8 build and {len(record.trials)} searched builds (static and dynamic, "
            "plain and fused graphs, calibration method, weight granularity, up to "
            f"{max(len(t.float_nodes) for t in record.trials) if record.trials else 0} layers "
            f"in float) all fail the gate on the search half ({record.n_search} rows)"
        ]
        return Recommendation("search", "", "FAIL", base, None, shape, why, helps, str(out))
    name = _choice_name(b)
    fp32 = Path(run.build(base).model_path) if _has(run, base) else None
    ci = _paired_speedup(fp32, out, record, shape, run, opts) if fp32 else None
    reasons = [
        f"judged on the gate half ({g.n} rows the search never saw): accuracy {g.accuracy:.2%} "
        f"vs FP32 {g.fp32_accuracy:.2%}, agreement {g.agreement:.2%}",
        *g.reasons,
    ]
    keep = helps if g.verdict != "PASS" else []
    return Recommendation("search", name, g.verdict, base, ci, shape, reasons, keep, str(out))


def _choice_name(b: TrialRecord) -> str:
    """The search's choice as the demo names it: kind, graph and how it was built."""
    gran = "per-channel" if b.per_channel else "per-tensor"
    floats = f"{len(b.float_modules)} layer(s) kept in float" if b.float_modules else "all INT8"
    graph = "-fused" if b.graph == "fused" else ""
    how = ", ".join([*([b.method] if b.kind == "static" else []), f"{gran} weights", floats,
                     *b.recovery])  # fmt: skip
    return f"ort-int8-{b.kind}{graph} ({how})"


def what_would_help(record: SearchRecord, exp: Experiment) -> list[str]:
    """What would settle or fix a verdict that is not PASS, from the record's own numbers."""
    policy = exp.gate.policy
    need = 2 * policy.min_samples if policy is not None else 0
    n_test = record.n_search + record.n_gate
    out = []
    if need and n_test < need:
        out.append(
            f"more labelled rows: the test split has {n_test}; the search halves it, and "
            f"{need} give the gate half the policy's minimum ({need // 2})"
        )
    elif not exp.quick:
        out.append(f"more labelled rows: {n_test} test rows give a wide interval on the drop")
    else:
        out.append("the full run (without --quick) judges on the whole test split")
    if not exp.data.unlabeled:
        out.append(
            "unlabelled traffic ([data] unlabeled = FILE): the search then scores candidates "
            "on traffic and spends no labels"
        )
    most = max((len(t.float_nodes) for t in record.trials), default=0)
    out.append(
        f"keeping more layers in float (the search kept up to {most}): "
        f"workbench search --max-float {max(2 * most, 8)}"
    )
    return out


def _has(run: RunResult, name: str) -> bool:
    return any(b.name == name for b in run.builds)


def _at(lats: list[LatencyResult], shape: tuple[int, int]) -> LatencyResult | None:
    return next((x for x in lats if (x.batch_size, x.seq_len) == shape), None)


def _only_a_busy_machine(d: GateDecision) -> str:
    """What would settle ``d`` when the only rules it did not pass are speed rules that the
    machine's load left INCONCLUSIVE ("the machine was busy (...): re-run on a quiet one");
    "" otherwise. A search cannot settle those: it times its candidates on the same machine."""
    open_ = [c for c in d.checks if not c.passed]
    if not open_ or not all(
        c.name == "speedup" and c.status == INCONCLUSIVE and c.details.get("contended")
        for c in open_
    ):
        return ""
    return str(open_[0].details.get("settle") or "the machine was busy: re-run on a quiet one")


def _run_speedup(run: RunResult, base: str, cand: str, shape: tuple[int, int]):
    """The run's own side-by-side latency at the gate's shape (None where not measured)."""
    from workbench.report.latency import speedup_ci

    if not (_has(run, base) and _has(run, cand)):
        return None
    lb, lc = _at(run.build(base).latency, shape), _at(run.build(cand).latency, shape)
    return speedup_ci(lb, lc) if lb and lc else None


def _paired_speedup(
    fp32: Path,
    out: Path,
    record: SearchRecord,
    shape: tuple[int, int],
    run: RunResult,
    opts: StoryOptions,
):
    """FP32 and the search's choice timed interleaved over rounds; the ratio's bootstrap CI."""
    from workbench.backends.onnxruntime.fusion import unshare_dequantize
    from workbench.report.latency import speedup_ci

    chosen = out / "best.ort.onnx"  # one Q/DQ pair per consumer, as the search timed it
    if (out / "best.onnx").is_file():  # a dynamic, fused or recovered build: as timed
        chosen = out / "best.onnx"
    elif not chosen.is_file():
        unshare_dequantize(out / "best.qdq.onnx", chosen)
    e = run.experiment.evaluate
    base, cand = _interleaved(
        [fp32, chosen], shape, opts.timing_rounds, max(e.iterations, 10), e.threads
    )
    return speedup_ci(base, cand)


def _interleaved(
    models: list[Path],
    shape: tuple[int, int],
    rounds: int,
    iterations: int,
    threads: int,
) -> list[LatencyResult]:
    """Each model timed ``rounds`` times, alternating, samples pooled per model."""
    import numpy as np

    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.evaluate.latency import measure_latency, summarize_ms

    samples: list[list[float]] = [[] for _ in models]
    runners = [OrtRunner(m, intra_op_threads=threads) for m in models]
    try:
        feed = _timing_feed(runners[0], shape)
        for _ in range(rounds):
            for i, r in enumerate(runners):
                samples[i] += measure_latency(r, feed, iterations, warmup=2).samples_ms
    finally:
        for r in runners:
            r.close()
    return [
        summarize_ms(np.asarray(s), shape[0], shape[1], 2, False, "perf_counter_ns")
        for s in samples
    ]


def _timing_feed(runner, shape: tuple[int, int]) -> dict:
    """A full (batch, seq) feed for a BERT-family ONNX model: token ids, an all-ones mask,
    zero segment ids. Latency depends on the shape, not on which tokens fill it."""
    import numpy as np

    b, q = shape
    ids = (np.arange(b * q, dtype=np.int64).reshape(b, q) % 1000) + 1000
    feed = {}
    for spec in runner.input_specs:
        name = spec.name.lower()
        value = np.ones_like(ids) if "mask" in name else ids
        feed[spec.name] = np.zeros_like(ids) if "type" in name else value
    return feed
