"""``workbench search``: the fastest INT8 build that passes the experiment's gate, from every
kind of build (static and dynamic, plain and fused graphs, recovery options: ``search_builds``).

The test split is halved (seeded): the search ranks layers and scores candidates on the
*search* half only, then the chosen build is judged on the *gate* half it never saw (no
selection bias). With unlabelled traffic (``[data] unlabeled``) no label is spent on the
search: it ranks and scores candidates on half the traffic (agreement with FP32, the
disagreement bound of the gate's traffic rule), and the choice is judged on the *whole*
labelled test set plus the other half of the traffic, which it never saw. Candidates vary the
build kind and graph, calibration method, per-channel vs per-tensor weights, recovery options
and the layers kept in float (greedy from the sensitivity ranking, then pruning,
``search_core``); latency is measured for real here.
Every verdict comes from the gate's one judge (``gate.judge_labelled``): PASS, FAIL or
INCONCLUSIVE (a gate half too small to tell says how many rows would).

Example::

    record, out = run_search(load_experiment("experiment.toml"), SearchOptions())
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import ConfigError
from workbench.fileio import atomic_write_text
from workbench.results.records import SCHEMA_VERSION, save_record
from workbench.results.search import (
    SEARCH_FILE,
    GateCheckOnSplit,
    SearchRecord,
    TrafficCheckOnSplit,
    TrialRecord,
)
from workbench.results.spec import Experiment

if TYPE_CHECKING:
    from workbench.backends.base import Feed
    from workbench.calibration.table import CalibrationTable
    from workbench.experiment.progress import Stages
    from workbench.experiment.search_core import Candidate, Trial
    from workbench.experiment.workspace import Workspace
    from workbench.results.gate import GateDecision
    from workbench.results.policy import GatePolicy

log = logging.getLogger(__name__)

RANKINGS = ("proxy", "task")


@dataclass(frozen=True)
class SearchOptions:
    """Where the search writes and how hard it looks."""

    out_dir: str = "search"
    calibration_root: str = "calibration_sets"
    methods: tuple[str, ...] = ("max", "entropy")
    ranking: str = "proxy"
    max_float: int = 8
    progress: bool = True
    kinds: tuple[str, ...] = ("static", "dynamic")
    graphs: tuple[str, ...] = ("plain", "fused")  # fused: where the model's family has one
    recovery: bool = True  # try the installed accuracy-recovery options (search_builds)
    # on a half of >= min_samples rows accept only what the judge PASSes there; False: what
    # fails no rule (faster: the first build that cannot tell ends a configuration's search)
    strict: bool = True
    # minutes for searching configurations once every all-INT8 start is scored and timed
    # (None: no bound); what the budget cut is named in search.json's not_searched
    time_budget_min: float | None = None


@dataclass
class _Split:
    feeds: list[Feed]
    labels: np.ndarray | None  # None: unlabelled traffic (scored against FP32)
    fp32: np.ndarray  # FP32 logits
    rows: np.ndarray | None = None  # the test split's row behind each score (labelled splits)


def run_search(exp: Experiment, opts: SearchOptions) -> tuple[SearchRecord, Path]:
    """Search, verify on the gate split, write search.json and the chosen build's artifacts."""
    from workbench.experiment.progress import Stages
    from workbench.experiment.rundir import check_not_busy, lock_dir
    from workbench.experiment.workspace import Workspace

    check_search_options(exp, opts)  # every argument check, before anything is written
    cal = replace(exp.calibration, method=opts.methods[0], compare=tuple(opts.methods))
    exp = replace(exp, calibration=cal)
    st, t0 = Stages(opts.progress), time.perf_counter()
    out = Path(opts.out_dir)
    check_not_busy(out)  # another search writing there: refuse before loading anything
    with st.stage("load data and model"):
        ws = Workspace.from_experiment(exp)
        ws.export  # noqa: B018 (the ONNX export, cached; not written into out)
    with lock_dir(out, "--out", "search"):  # held to the end: a second search into out is refused
        return _search(ws, opts, out, st, t0)


def check_search_options(exp: Experiment, opts: SearchOptions) -> None:
    """ConfigError (exit 2) for any bad option, before the first file is written."""
    from workbench.calibration.table import check_methods
    from workbench.fileio import check_path_arg, check_writable_dir

    if opts.ranking not in RANKINGS:
        raise ConfigError(f"ranking {opts.ranking!r} unknown; use one of {RANKINGS}")
    if exp.gate.policy is None:
        raise ConfigError("the search needs a gate policy: set [gate] policy")
    if not opts.methods:
        raise ConfigError("--methods is empty; name at least one calibration method")
    check_methods(list(opts.methods))
    from workbench.experiment.search_core import check_kinds

    check_kinds(opts.kinds, opts.graphs)
    if opts.max_float < 0:
        raise ConfigError(f"--max-float {opts.max_float}: use 0 or more layers kept in float")
    budget = opts.time_budget_min
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ConfigError(f"--time-budget {budget}: give the minutes as a number above 0")
    out = check_path_arg(opts.out_dir, "--out")
    check_writable_dir(out, "--out folder", "pass --out a writable folder", create=False)
    roots = check_path_arg(opts.calibration_root, "--calibration-sets")
    fix = "pass --calibration-sets a writable folder"
    check_writable_dir(roots, "calibration-sets folder", fix, create=False)


def _search(
    ws: Workspace, opts: SearchOptions, out: Path, st: Stages, t0: float
) -> tuple[SearchRecord, Path]:
    """The search proper, inside the locked ``out`` folder."""
    exp, onnx = ws.exp, ws.export.onnx_path
    calib = ws.calibrate(out, opts.calibration_root, stages=st, compare=False)
    tables = _tables(Path(calib.table_file).parent, opts.methods)
    search_split, gate_split, heldout = _splits(ws, onnx)
    with st.stage("rank layers"):
        ranking = _ranking(onnx, tables[opts.methods[0]], search_split, opts.ranking)
    from workbench.experiment.search_builds import CandidateBuilder, search_space
    from workbench.experiment.search_core import search

    table_files = {m: str(Path(calib.table_file).parent / f"{m}.json") for m in opts.methods}
    builder = CandidateBuilder(
        onnx, table_files, out / "candidates", ws.torch_model_dir, calib.feeds()
    )
    builder.ranking = tuple(ranking)
    searcher = _Searcher(onnx, builder, exp, ws, opts.strict)
    space, not_searched = search_space(ws, builder, opts, ranking)
    with st.stage("search") as bar:
        result = search(
            space,
            lambda c: searcher.score(c, search_split),
            searcher.latency,
            progress=st.callback(bar),
        )
    n_search = 0 if search_split.labels is None else len(search_split.labels)
    n_test = n_search + len(gate_split.labels)
    best = result.best or searcher.fallback(result.trials)
    check = None if best is None else searcher.judge(best.candidate, gate_split, n_test)
    if best is not None and check is not None and not best.passed:
        check.reasons.append(
            f"no build passed every rule on the {n_search}-row search half; this is the "
            "fastest that failed none there"
        )
    if check is not None and result.out_of_time:
        check.reasons.append(
            f"the {opts.time_budget_min:g}-minute time budget ran out with "
            f"{len(result.out_of_time)} configuration(s) not fully searched (search.json's "
            "not_searched); a longer --time-budget may find a faster build"
        )
    traffic_check = None
    if best is not None and heldout is not None:
        traffic_check = searcher.certify(best.candidate, heldout, len(search_split.fp32))
        check = _settled(check, traffic_check, searcher.policy)
    files = _write_choice(searcher, best, tables, out, check) if check and best else []
    record = SearchRecord(
        schema_version=SCHEMA_VERSION,
        experiment=exp.name,
        model_onnx_sha256=ws.export.onnx_sha256,
        ranking_kind=opts.ranking,
        ranking=[_module(n) for n in ranking],
        n_search=len(search_split.fp32),
        n_gate=len(gate_split.fp32),
        latency_shape=list(searcher.shape),
        fp32_latency_ms=searcher.fp32_latency(),
        trials=[_trial(t) for t in result.trials],
        pareto=[_trial(t) for t in result.pareto],
        best=_trial(best) if best else None,
        gate_check=check,
        traffic_check=traffic_check,
        exclude=_patterns(best.candidate.float_nodes) if best else [],
        files=files,
        seconds=time.perf_counter() - t0,
        configurations=[c.label for c in space.configurations()],
        not_searched=not_searched + [f"{c.label}: its all-INT8 start is no faster than a "
                                     "passing build found" for c in result.bounded]
        + [f"{c.label}: the {opts.time_budget_min:g}-minute time budget ran out before its "
           "search was done" for c in result.out_of_time],
    )  # fmt: skip
    save_record(record, out / SEARCH_FILE)
    from workbench.report.search import render_search

    render_search(out)
    return record, out


class _Searcher:
    """Scores and times candidates (built by ``search_builds``, cached by content)."""

    def __init__(
        self, onnx: str, builder, exp: Experiment, ws: object, strict: bool = True
    ) -> None:
        assert exp.gate.policy is not None
        self.onnx, self.builder = onnx, builder
        self.policy = exp.gate.policy
        self.shape = (self.policy.latency_batch, self.policy.latency_seq)
        self.ws = ws
        self.threads = exp.evaluate.threads
        self._fp32_ms: float | None = None
        self.lenient: dict[Candidate, bool] = {}  # failed no rule on the search half
        self.strict = strict

    def build(self, c: Candidate) -> Path:
        """The candidate's model as ONNX Runtime runs it."""
        return Path(self.builder.build(c))

    def score(self, c: Candidate, split: _Split):  # -> Verdict
        """Whether the search may pick ``c`` on the search split. A half of at least the
        policy's ``min_samples`` rows can settle every rule, so there the judge must PASS (the
        fastest build that *passes*, as the gate will judge it). A smaller half cannot settle
        agreement or size: there no rule may FAIL and the metric's non-inferiority rule must
        PASS. Either way ``lenient`` keeps the second answer, for ``fallback``."""
        from workbench.experiment.search_core import Verdict

        if split.labels is None:
            return Verdict(*self.score_unlabelled(self.build(c), split))
        policy = replace(self.policy, min_samples=min(self.policy.min_samples, len(split.labels)))
        decision, pred = self._judge(self.build(c), split, policy)
        metric = {x.name: x.status for x in decision.checks}.get(f"{policy.metric}_drop", "pass")
        self.lenient[c] = decision.verdict != "FAIL" and metric == "pass"
        strict = self.strict and len(split.labels) >= self.policy.min_samples
        ok = decision.verdict == "PASS" if strict else self.lenient[c]
        return Verdict(ok, float(np.mean(pred == split.labels)))

    def fallback(self, trials: list[Trial]) -> Trial | None:
        """When no build PASSed on a large search half: the fastest timed one that failed no
        rule there (its gate-half verdict then says what the evidence allows), else None."""
        ok = [t for t in trials if self.lenient.get(t.candidate) and math.isfinite(t.latency_ms)]
        return min(ok, key=lambda t: (t.latency_ms, -t.metric), default=None)

    def score_unlabelled(self, model: Path, split: _Split) -> tuple[bool, float]:
        """Unlabelled rows: pass when the disagreement bound (the gate's traffic rule) and the
        agreement limit hold; the metric is agreement with FP32."""
        from workbench.evaluate.scorer import model_logits
        from workbench.gate.traffic import cp_upper

        pred = model_logits(model, split.feeds, self.threads).argmax(axis=1)
        differ = int(np.sum(pred != split.fp32.argmax(axis=1)))
        agreement, p = 1.0 - differ / len(pred), self.policy
        ok = p.max_accuracy_drop is None or (
            cp_upper(differ, len(pred), p.confidence) <= p.max_accuracy_drop
        )
        if p.min_prediction_agreement is not None:
            ok = ok and agreement >= p.min_prediction_agreement
        return ok, agreement

    def certify(self, c: Candidate, split: _Split, n_search: int) -> TrafficCheckOnSplit:
        """The gate's certification rule on held-out traffic (PASS or INCONCLUSIVE)."""
        from workbench.evaluate.scorer import model_logits
        from workbench.gate.traffic import certify

        pred = model_logits(self.build(c), split.feeds, self.threads).argmax(axis=1)
        k, n = int(np.sum(pred != split.fp32.argmax(axis=1))), len(pred)
        limit = self.policy.max_accuracy_drop
        g = certify("fp32", "the choice", k, n, 0.0 if limit is None else limit,
                    self.policy.confidence)  # fmt: skip
        return TrafficCheckOnSplit(n_search, n, k, float(g.observed or 0.0), g.status, g.message)

    def judge(self, c: Candidate, split: _Split, n_test: int) -> GateCheckOnSplit:
        """The chosen build on the gate split, judged by the gate's one judge."""
        decision, pred = self._judge(self.build(c), split, self.policy)
        reasons = list(decision.reasons)
        halved = n_test > len(split.labels)
        if halved and any(
            x.name == "samples" and x.status == "inconclusive" for x in decision.checks
        ):
            reasons.append(
                f"the search halves the test split: its gate half is {len(split.labels)} of "
                f"{n_test} rows; a test split of at least {2 * self.policy.min_samples} labelled "
                "rows gives the gate half the policy's minimum"
            )
        ref = split.fp32.argmax(axis=1)
        metric = next((x for x in decision.checks if x.name == "accuracy_drop"), None)
        ci_low = ci_high = math.nan
        if metric is not None and "ci_low" in metric.details:
            ci_low, ci_high = float(metric.details["ci_low"]), float(metric.details["ci_high"])
        return GateCheckOnSplit(
            n=len(split.labels),
            fp32_accuracy=float(np.mean(ref == split.labels)),
            accuracy=float(np.mean(pred == split.labels)),
            drop_ci_low=ci_low,
            drop_ci_high=ci_high,
            agreement=float(np.mean(pred == ref)),
            passed=decision.passed,
            reasons=reasons,
            verdict=decision.verdict,
        )

    def _judge(
        self, model: Path, split: _Split, policy: GatePolicy
    ) -> tuple[GateDecision, np.ndarray]:
        """Predictions of ``model`` vs FP32 on ``split``, judged by ``gate.judge_labelled``."""
        from workbench.evaluate.scorer import model_logits
        from workbench.gate import Labelled, judge_labelled
        from workbench.results.predictions import Predictions

        pred = model_logits(model, split.feeds, self.threads).argmax(axis=1)
        idx = np.arange(len(split.labels), dtype=np.int64)
        labels = np.asarray(split.labels, dtype=np.int64)

        def preds(name: str, p: np.ndarray, logits: np.ndarray) -> Predictions:
            return Predictions(name, idx, labels, np.asarray(p, dtype=np.int64), logits)

        lab = Labelled(
            "ort-fp32",
            f"candidate {model.stem}",
            preds("ort-fp32", split.fp32.argmax(axis=1), split.fp32),
            preds(model.stem, pred, np.zeros((len(idx), 0))),
        )
        return judge_labelled(lab, policy), pred

    def latency(self, c: Candidate) -> float:
        return self._time(self.build(c))

    def fp32_latency(self) -> float:
        if self._fp32_ms is None:
            self._fp32_ms = self._time(Path(self.onnx))
        return self._fp32_ms

    def _time(self, model: Path) -> float:
        from workbench.backends.onnxruntime.runner import OrtRunner
        from workbench.evaluate.latency import fixed_shape_feed, measure_latency

        texts = ["a long and winding review of a film that is, on balance, worth the ticket"] * 4
        feed = fixed_shape_feed(texts, self.ws.tokenizer, *self.shape)  # type: ignore[attr-defined]
        with OrtRunner(model, intra_op_threads=self.threads) as r:
            return measure_latency(r, feed, iterations=20, warmup=3, max_seconds=10).p50_ms


def _tables(folder: Path, methods: tuple[str, ...]) -> dict[str, CalibrationTable]:
    from workbench.calibration.table import CalibrationTable

    return {m: CalibrationTable.load(folder / f"{m}.json") for m in methods}


def _splits(ws: object, onnx: str) -> tuple[_Split, _Split, _Split | None]:
    """Without traffic: halve the test split (seeded) into search and gate halves. With traffic:
    search on half the traffic (seeded), judge on the whole test split and the other half."""
    from workbench.evaluate.accuracy import length_order
    from workbench.evaluate.scorer import model_logits

    texts, pairs, labels = ws.texts, ws.pairs, ws.labels  # type: ignore[attr-defined]
    rng = np.random.default_rng(ws.exp.seed)  # type: ignore[attr-defined]
    traffic = ws.traffic_texts  # type: ignore[attr-defined]
    if traffic:
        order = rng.permutation(len(traffic))
        parts = (order[: len(order) // 2], order[len(order) // 2 :])
        if min(len(p) for p in parts) < 20:
            raise ConfigError(
                f"[data] unlabeled has {len(traffic)} texts; the search needs at least 40 "
                "(half to search on, half to check the choice), or leave unlabeled out"
            )
        tsplits = []
        for idx in parts:  # batched as the gate batches them
            idx = idx[length_order(ws.tokenizer, [traffic[i] for i in idx])]  # type: ignore[attr-defined]
            feeds = ws.traffic_feeds(idx)  # type: ignore[attr-defined]
            tsplits.append(_Split(feeds, None, model_logits(onnx, feeds)))
        every = np.arange(len(texts))
        return tsplits[0], _labelled(ws, every, texts, pairs, labels, onnx), tsplits[1]
    order = rng.permutation(len(texts))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    if min(len(h) for h in halves) < 20:
        raise ConfigError(
            f"the test split has {len(texts)} samples; the search needs at least 40 to halve"
        )
    search, gate = (_labelled(ws, idx, texts, pairs, labels, onnx) for idx in halves)
    return search, gate, None


def _labelled(ws: object, idx, texts, pairs, labels, onnx: str) -> _Split:
    """The rows ``idx`` batched as the gate scores a test split (``predict_logits``: sorted by
    token length, batches of the runner's 32): dynamic INT8 takes one activation range per
    batch, so a build's predictions depend on its batch-mates, and the search must see the
    batches the gate will."""
    from workbench.backends.base import Runner
    from workbench.evaluate.accuracy import length_order
    from workbench.evaluate.scorer import model_logits

    tok, size = ws.tokenizer, Runner.eval_batch_size  # type: ignore[attr-defined]
    second = None if pairs is None else [pairs[i] for i in idx]
    idx = np.asarray(idx)[length_order(tok, [texts[i] for i in idx], second)]
    feeds = [
        tok.encode(
            [texts[i] for i in idx[s : s + size]],
            pairs=None if pairs is None else [pairs[i] for i in idx[s : s + size]],
        )
        for s in range(0, len(idx), size)
    ]
    return _Split(feeds, labels[idx], model_logits(onnx, feeds), idx)


def _settled(
    check: GateCheckOnSplit | None, traffic: TrafficCheckOnSplit, policy: GatePolicy
) -> GateCheckOnSplit | None:
    """Held-out traffic that certifies the choice (its disagreement bound is within the accuracy
    limit) settles a labelled check that could not tell; a labelled FAIL stays a FAIL."""
    if check is None or check.verdict != "INCONCLUSIVE" or traffic.status != "pass":
        return check
    if policy.max_accuracy_drop is None:
        return check
    reason = (
        f"labelled check could not tell ({'; '.join(check.reasons)}); settled by held-out "
        f"traffic ({traffic.message})"
    )
    return replace(check, passed=True, verdict="PASS", reasons=[reason])


def _ranking(onnx: str, table: CalibrationTable, split: _Split, kind: str) -> list[str]:
    from workbench.evaluate.sensitivity import SensitivitySpec, layer_sensitivity, proxy_ranking

    if kind == "proxy":
        return proxy_ranking(onnx, table, split.feeds, SensitivitySpec(proxy_samples=128))
    labels = split.fp32.argmax(axis=1) if split.labels is None else split.labels  # agreement
    return layer_sensitivity(onnx, table, split.feeds, labels, SensitivitySpec()).ranking


def _verdict_comment(check: GateCheckOnSplit) -> list[str]:
    """The head of exclude.toml: what the judge said of this build on the gate split."""
    head = {
        "PASS": "the search's choice (the fastest build it accepted); the gate split says PASS",
        "FAIL": "the search's choice (the fastest build it accepted) FAILED the gate split: "
        "do not ship it as is",
        "INCONCLUSIVE": "the search's choice (the fastest build it accepted); the gate split "
        "cannot tell (INCONCLUSIVE): judge it on more labelled rows before shipping",
    }[check.verdict]
    lines = [f"# {head}", f"# gate verdict: {check.verdict} on {check.n} rows the search never saw"]
    lines += [f"# - {' '.join(r.split())}" for r in check.reasons]
    return lines


def _write_choice(
    s: _Searcher, best: Trial, tables: dict, out: Path, check: GateCheckOnSplit
) -> list[str]:
    """The chosen build's files and the experiment snippet that builds it (exclude.toml). A
    static build on the plain graph: its Q/DQ model (as TensorRT takes it), table and TensorRT
    cache; any other kind: the ONNX Runtime model itself (best.onnx)."""
    import shutil

    import tomli_w

    c = best.candidate
    patterns = _patterns(c.float_nodes)
    body: dict[str, object] = {
        "calibration": {"method": c.method, "per_channel": c.per_channel, "exclude": patterns}
    }
    if c.kind == "static" and c.graph == "plain" and not c.recovery:
        from workbench.calibration.qdq import write_qdq_model
        from workbench.calibration.trt_cache import write_trt_cache

        table = tables[c.method]
        write_qdq_model(s.onnx, table, out / "best.qdq.onnx", c.per_channel, patterns)
        table.save(out / "best.table.json")
        write_trt_cache(table, out / "best.calib")
        files = ["best.qdq.onnx", "best.table.json", "best.calib"]
    else:
        shutil.copyfile(s.build(c), out / "best.onnx")
        files = ["best.onnx"]
        if c.kind == "dynamic":
            body = {"calibration": {"per_channel": c.per_channel, "exclude": patterns}}
    build: dict[str, object] = {"backend": "onnxruntime", "precision": f"int8-{c.kind}"}
    build["graph"] = c.graph
    lines = [*_verdict_comment(check), f"# build: {c.label}"]
    from workbench.experiment.search_builds import buildable

    if c.recovery and c.kind == "dynamic" and buildable(c.recovery):
        build["recovery"] = list(c.recovery)  # [[build]] rebuilds it (onnxruntime/recovery.py)
    elif c.recovery:
        lines.append(f"# recovery options {list(c.recovery)} are search-only: ship best.onnx")
    body["build"] = [build]
    atomic_write_text(out / "exclude.toml", "\n".join(lines) + "\n" + tomli_w.dumps(body))
    return [*files, "exclude.toml"]


def _patterns(nodes: tuple[str, ...] | list[str]) -> list[str]:
    from workbench.experiment.search_core import exclude_patterns

    return list(exclude_patterns(list(nodes)))


def _module(node: str) -> str:
    from workbench.evaluate.sensitivity import module_path

    return module_path(node)


def _trial(t: Trial) -> TrialRecord:
    c = t.candidate
    return TrialRecord(
        kind=c.kind,
        graph=c.graph,
        recovery=list(c.recovery),
        method=c.method,
        per_channel=c.per_channel,
        float_nodes=list(c.float_nodes),
        float_modules=[_module(n) for n in c.float_nodes],
        passed=t.passed,
        accuracy=t.metric,
        latency_ms=t.latency_ms,
        stage=t.stage,
    )
