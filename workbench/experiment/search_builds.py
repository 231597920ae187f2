"""Build one search candidate as ONNX Runtime runs it: static Q/DQ or dynamic INT8, on the
plain or the fused BERT graph, after the accuracy-recovery options it names.

Recovery options are data (``RECOVERY_OPTIONS``): each names the module that implements it,
the build kinds it applies to and where it acts (on the FP32 model before quantizing, or on
the Q/DQ model after). An option whose module is not installed is not offered, so adding one
is one line here. Every file is cached by the content of what made it.

Example::

    b = CandidateBuilder(onnx, table_files, folder, torch_model, feeds)
    path = b.build(Candidate("max", True, (), "static", "fused"))
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError
from workbench.fileio import sha256_file, sha256_json

if TYPE_CHECKING:
    from workbench.backends.base import Feed
    from workbench.calibration.table import CalibrationTable
    from workbench.experiment.search_core import Candidate, SearchSpace


# in every candidate file's key; 2: per-token in fused kernels; 3: fewer passes; 4: one
# reduction after a fused GELU
BUILD_VERSION = 4
# per-token-ffn-down-worst-K options the search tries
WORST_FFN_DOWN = (1, 2, 3)


@dataclass(frozen=True)
class RecoveryOption:
    """An accuracy-recovery transform the search may try as a candidate option."""

    name: str  # as it appears in Candidate.recovery and the search record
    module: str  # offered only where this module exists
    kinds: tuple[str, ...]  # build kinds it applies to
    stage: str  # "fp32": transforms the FP32 model before quantizing; "qdq": the Q/DQ model
    alpha: float = 0.0  # SmoothQuant migration strength
    worst: int = 0  # per-token: how many of the most harmful layers (the search's ranking)


RECOVERY_OPTIONS = (
    RecoveryOption(
        "smoothquant-0.5", "workbench.calibration.smoothquant", ("static",), "fp32", 0.5
    ),
    # dynamic INT8 on the default classifier, fused graph, full test split: 82 rows disagree
    # with FP32 unsmoothed, 67-71 at alpha 0.6-0.9, 91 at 0.95 (2026-12-05, docs/search.md)
    RecoveryOption(
        "smoothquant-0.8", "workbench.calibration.smoothquant", ("dynamic",), "fp32", 0.8
    ),
    RecoveryOption("bias-correction", "workbench.calibration.bias_correction", ("static",), "qdq"),
    RecoveryOption(
        "per-token-worst-4",
        "workbench.calibration.per_token",
        ("static", "dynamic"),
        "qdq",
        worst=4,
    ),
    # per-token activations for every feed-forward MatMul (hidden -> intermediate and back):
    # dynamic fused, full test split, 82 -> 40 rows disagreeing with FP32 (docs/search.md)
    # (built, alone or paired, by backends/onnxruntime/recovery.py: what a [[build]] table
    # with recovery = [...] builds)
    RecoveryOption("per-token-ffn", "workbench.calibration.per_token", ("dynamic",), "qdq"),
    # only the narrowing FFN MatMuls (they read the GELU output): half the per-token work;
    # with SmoothQuant 0.8, search half 37 -> 13 disagreements vs 11 for all FFN (docs/search.md)
    RecoveryOption("per-token-ffn-down", "workbench.calibration.per_token", ("dynamic",), "qdq"),
    # only the K narrowing FFN MatMuls per-token helps most, ranked without labels on the
    # calibration set (backends/onnxruntime/token_ranking.py): per-token costs time per layer
    # and, with SmoothQuant 0.8 on the default classifier, layer 0 alone gave half the gain
    *(
        RecoveryOption(
            f"per-token-ffn-down-worst-{k}",
            "workbench.backends.onnxruntime.token_ranking",
            ("dynamic",),
            "qdq",
        )
        for k in WORST_FFN_DOWN
    ),
)
# pairs of an FP32-stage and a Q/DQ-stage option also tried together, for the kinds named:
# SmoothQuant and per-token FFN activations act on different MatMul inputs (LayerNorm outputs;
# the GELU output and the FFN input), so their gains can add up
RECOVERY_PAIRS = (
    (("smoothquant-0.8", "per-token-ffn"), ("dynamic",)),
    (("smoothquant-0.8", "per-token-ffn-down"), ("dynamic",)),
    *((("smoothquant-0.8", f"per-token-ffn-down-worst-{k}"), ("dynamic",)) for k in WORST_FFN_DOWN),
)


def available_recoveries(kind: str) -> tuple[tuple[str, ...], ...]:
    """Recovery combinations to try for ``kind``: none, each installed option alone, then the
    ``RECOVERY_PAIRS`` for ``kind`` whose options are all installed and apply to it."""
    have = [
        o.name
        for o in RECOVERY_OPTIONS
        if kind in o.kinds and importlib.util.find_spec(o.module) is not None
    ]
    pairs = [p for p, kinds in RECOVERY_PAIRS if kind in kinds and set(p) <= set(have)]
    return ((), *((n,) for n in have), *pairs)


def _option(name: str) -> RecoveryOption:
    for o in RECOVERY_OPTIONS:
        if o.name == name:
            return o
    raise ConfigError(
        f"recovery option {name!r} unknown; known: {[o.name for o in RECOVERY_OPTIONS]}"
    )


class CandidateBuilder:
    """Writes (or reuses) each candidate's ORT-ready model under ``folder``."""

    def __init__(
        self,
        onnx: str,
        table_files: dict[str, str],
        folder: Path,
        torch_model: str,
        calibration: Callable[[], Iterable[Feed]],
    ) -> None:
        self.onnx, self.table_files, self.folder = onnx, table_files, folder
        self.torch_model, self.calibration = torch_model, calibration
        self.ranking: tuple[str, ...] = ()  # most harmful first (per-token's worst layers)
        folder.mkdir(parents=True, exist_ok=True)

    @cached_property
    def fused(self) -> str:
        """The fused FP32 graph (cached by content in the workbench cache)."""
        from workbench.backends.onnxruntime.fused_graph import num_heads
        from workbench.backends.onnxruntime.fusion import fuse_bert

        return str(fuse_bert(self.onnx, num_heads=num_heads(self.torch_model)).path)

    def base(self, graph: str) -> str:
        """The FP32 model a candidate on ``graph`` starts from."""
        return self.fused if graph == "fused" else self.onnx

    def table(self, c: Candidate, base: str) -> CalibrationTable:
        """The method's table for ``base`` (mapped by MatMul onto the fused graph)."""
        from workbench.backends.onnxruntime.fused_graph import mapped_table
        from workbench.calibration.table import CalibrationTable

        path = self.table_files[c.method]
        if c.graph == "fused":
            path = str(mapped_table(self.onnx, base, path, str(self.folder)))
        return CalibrationTable.load(path)

    def build(self, c: Candidate) -> Path:
        """The candidate's model as ONNX Runtime runs it (one Q/DQ pair per consumer)."""
        from workbench.backends.onnxruntime.build import quantize_dynamic_int8

        base = self.base(c.graph)
        if c.kind == "dynamic" and buildable(c.recovery):  # what a [[build]] table builds
            from workbench.backends.onnxruntime.recovery import dynamic_with_recovery

            fl = tuple(c.float_nodes)
            return dynamic_with_recovery(
                base, c.per_channel, fl, c.recovery, self.calibration, self.folder
            )[0]
        if c.kind == "dynamic":
            options = [_option(name) for name in c.recovery]
            for opt in (o for o in options if o.stage == "fp32"):
                base = str(self._fp32_stage(opt, base, c))
            token = next((o for o in options if o.stage == "qdq"), None)
            if token is None:
                return quantize_dynamic_int8(base, c.per_channel, tuple(c.float_nodes)).path
            return self._dynamic_per_token(token, base, c)
        made_by = [sha256_file(base), c.method, c.per_channel, sorted(c.float_nodes)]
        made_by += [list(c.recovery), list(self.ranking) if c.recovery else [], BUILD_VERSION]
        key = sha256_json(made_by)[:16]
        path = self.folder / f"{key}.onnx"
        if path.is_file():
            return path
        table = self.table(c, base)
        options = [_option(name) for name in c.recovery]
        for opt in (o for o in options if o.stage == "fp32"):
            base, table = self._smoothed(opt, base, c)
        shared = self.folder / f"{key}.shared.onnx"
        _write_qdq(base, table, shared, c)
        for opt in (o for o in options if o.stage == "qdq"):
            shared = self._qdq_stage(opt, shared, base, key, c)
        from workbench.backends.onnxruntime.fusion import unshare_dequantize

        unshare_dequantize(shared, path)
        for tmp in self.folder.glob(f"{key}.*.onnx"):  # intermediates: only the model stays
            tmp.unlink()
        return path

    def _dynamic_per_token(self, opt: RecoveryOption, base: str, c: Candidate) -> Path:
        """Dynamic INT8 with the worst layers' activations quantized per token (one scale per
        row) instead of ORT's one scale per tensor, padding included."""
        from workbench.backends.onnxruntime.build import quantize_dynamic_int8

        worst = self._worst(opt, base, c)
        if not worst:  # no MatMul with a constant weight left to make per-token
            return quantize_dynamic_int8(base, c.per_channel, tuple(c.float_nodes)).path
        made_by = [sha256_file(base), c.per_channel, sorted(c.float_nodes), opt.name, worst]
        made_by.append(BUILD_VERSION)
        path = self.folder / f"{sha256_json(made_by)[:16]}.onnx"
        if path.is_file():
            return path
        dyn = quantize_dynamic_int8(base, c.per_channel, c.float_nodes, tuple(worst)).path
        mod = importlib.import_module(opt.module)
        return Path(mod.dynamic_matmuls(Path(dyn), worst, path, granularity="per-token"))

    def _worst(self, opt: RecoveryOption, fp32: str, c: Candidate) -> list[str]:
        """The ``opt.worst`` most harmful MatMuls (the ranking) with a constant weight."""
        from workbench.calibration.graph import load_onnx

        g = load_onnx(fp32, load_external_data=False).graph
        inits = {i.name for i in g.initializer}
        weighted = {
            n.name
            for n in g.node
            if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits
        }
        ok = [n for n in self.ranking if n in weighted and n not in c.float_nodes]
        return ok[: opt.worst]

    def _smoothed(
        self, opt: RecoveryOption, base: str, c: Candidate
    ) -> tuple[str, CalibrationTable]:
        """SmoothQuant-style scale migration, then the method's table recalibrated on it."""
        from workbench.backends.onnxruntime.runner import open_ort_runner
        from workbench.calibration.table import calibrate

        smoothed = self._fp32_stage(opt, base, c)
        table = calibrate(smoothed, list(self.calibration()), c.method, open_runner=open_ort_runner)
        return str(smoothed), table

    def _fp32_stage(self, opt: RecoveryOption, base: str, c: Candidate) -> Path:
        """SmoothQuant: per-channel maxima of the LayerNorm outputs, then the migration."""
        from workbench.backends.onnxruntime.runner import open_ort_runner
        from workbench.calibration.stats import channel_absmax

        mod = importlib.import_module(opt.module)
        out = self.folder / f"{sha256_json([sha256_file(base), opt.name])[:16]}.fp32.onnx"
        if not out.is_file():
            sites = mod.smoothing_sites(base)
            absmax = channel_absmax(base, sites, self.calibration(), open_runner=open_ort_runner)
            mod.smooth_model(Path(base), absmax, opt.alpha, out)
        return out

    def _qdq_stage(self, opt: RecoveryOption, qdq: Path, fp32: str, key: str, c: Candidate) -> Path:
        """Bias correction, or per-token dynamic activations for the worst layers."""
        mod = importlib.import_module(opt.module)
        out = self.folder / f"{key}.{opt.name}.onnx"
        if opt.worst:
            worst = self._worst(opt, fp32, c)
            if not worst:  # no MatMul with a constant weight: nothing to make per-token
                return qdq
            return Path(mod.dynamic_matmuls(qdq, worst, out, granularity="per-token"))
        from workbench.backends.onnxruntime.runner import open_ort_runner

        feeds = list(self.calibration())
        return Path(mod.bias_correct(qdq, Path(fp32), feeds, out, open_runner=open_ort_runner))


def search_space(
    ws: Any, builder: CandidateBuilder, opts: Any, ranking: list[str]
) -> tuple[SearchSpace, list[str]]:
    """Every kind of build the model allows; why any asked-for graph is not searched."""
    from workbench.backends.onnxruntime.fused_graph import fusion_refusal, model_type_of
    from workbench.calibration.graph import load_onnx
    from workbench.experiment.search_core import SearchSpace

    graphs, not_searched, nodes = list(opts.graphs), [], {}
    if "fused" in graphs:
        reason = (
            "graph = 'fused' needs the model's Hugging Face folder"
            if ws.model.kind == "onnx"
            else fusion_refusal(model_type_of(ws.model.kind, ws.model.path))
        )
        if reason is None:
            fused = load_onnx(builder.fused, load_external_data=False)
            nodes["fused"] = frozenset(n.name for n in fused.graph.node)
        else:
            graphs.remove("fused")
            not_searched.append(f"fused graph: {reason}")
    recoveries = {k: available_recoveries(k) if opts.recovery else ((),) for k in opts.kinds}
    if opts.recovery:
        recoveries, refused = _applicable(recoveries, builder.onnx)
        not_searched += refused
    space = SearchSpace(
        opts.methods, (True, False), tuple(ranking), opts.max_float, kinds=tuple(opts.kinds),
        graphs=tuple(graphs), recoveries=recoveries, graph_nodes=nodes, timing_rounds=3,
        time_budget_s=None if opts.time_budget_min is None else 60.0 * opts.time_budget_min,
    )  # fmt: skip
    return space, not_searched


def _applicable(
    recoveries: dict[str, tuple[tuple[str, ...], ...]], model: str
) -> tuple[dict[str, tuple[tuple[str, ...], ...]], list[str]]:
    """Drop the recovery options whose module says they cannot apply to ``model``."""
    refused: dict[str, str] = {}
    for o in RECOVERY_OPTIONS:
        mod = importlib.import_module(o.module) if importlib.util.find_spec(o.module) else None
        check = getattr(mod, "refusal", None)
        reason = check(model) if check is not None else None
        if reason is not None:
            refused[o.name] = reason
    kept = {
        k: tuple(c for c in combos if not set(c) & set(refused)) for k, combos in recoveries.items()
    }
    return kept, [f"{name}: {why}" for name, why in refused.items()]


def buildable(recovery: tuple[str, ...]) -> bool:
    """True when a dynamic [[build]] table can name ``recovery`` (none included)."""
    from workbench.backends.onnxruntime.recovery import recovery_refusal

    return recovery_refusal(recovery, "onnxruntime", "cpu", "int8-dynamic") is None


def _write_qdq(base: str, table: CalibrationTable, out: Path, c: Candidate) -> None:
    from workbench.calibration.qdq import write_qdq_model
    from workbench.experiment.search_core import exclude_patterns

    write_qdq_model(base, table, out, c.per_channel, exclude_patterns(c.float_nodes))
