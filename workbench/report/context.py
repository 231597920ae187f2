"""What the HTML report shows, computed from a run's records only (no template logic here).

Every value handed to the template is plain data (numbers, strings, lists, dicts);
dataset text stays a ``str`` so the template's autoescaping escapes it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import ResultsError
from workbench.report import latency
from workbench.results import stats
from workbench.results.gate import GATE_FILE, GateDecision, load_decision
from workbench.results.precision import find_precision
from workbench.results.predictions import Predictions, load_predictions, load_test_texts
from workbench.results.records import BuildResult, LatencyResult, RunResult, hardware, load_run

log = logging.getLogger(__name__)

TOP_SAMPLES = 10
MAX_TEXT = 400  # characters of a sample shown in a table
BOOTSTRAP_RESAMPLES = 2000
PRIMARY_SHAPE = (1, 128)


@dataclass
class LoadedRun:
    """A run directory's records plus the per-build predictions that could be read."""

    run: RunResult
    run_dir: Path
    predictions: dict[str, Predictions] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # shown in the report, never hidden

    @classmethod
    def load(cls, run_dir: str | Path) -> LoadedRun:
        p = Path(run_dir)
        p = p.parent if p.suffix == ".json" else p
        loaded = cls(load_run(p), p)
        for b in loaded.run.builds:
            if b.accuracy is None:
                continue
            try:
                loaded.predictions[b.name] = load_predictions(p, b)
            except ResultsError as exc:
                loaded.problems.append(str(exc))
        return loaded


def primary_shape(run: RunResult) -> tuple[int, int] | None:
    """(batch, seq) shown when no gate judged latency: batch 1 × seq 128 if measured, else the
    smallest."""
    shapes = latency.shapes(run.builds)
    if not shapes:
        return None
    return PRIMARY_SHAPE if PRIMARY_SHAPE in shapes else shapes[0]


def headline_shape(run: RunResult, decision: GateDecision | None) -> tuple[int, int] | None:
    """The shape the summary shows: the one the gate judged when measured, else the primary."""
    gate = latency.gate_shape(decision)
    return gate if gate in latency.shapes(run.builds) else primary_shape(run)


def latency_at(build: BuildResult, shape: tuple[int, int] | None) -> LatencyResult | None:
    return latency.at(build, shape)


def _speedup(base: BuildResult | None, b: BuildResult, shape: tuple[int, int] | None) -> float:
    lb, lc = latency.at(base, shape), latency.at(b, shape)
    if lb is None or lc is None or lc.p50_ms <= 0:
        return math.nan
    return lb.p50_ms / lc.p50_ms


def _delta(loaded: LoadedRun, ref: str, name: str) -> dict[str, float] | None:
    """Paired bootstrap CI of accuracy(build) - accuracy(reference)."""
    pr, pb = loaded.predictions.get(ref), loaded.predictions.get(name)
    if pr is None or pb is None or not np.array_equal(pr.idx, pb.idx) or len(pb) == 0:
        return None
    ci = stats.paired_bootstrap(pb.label, pr.pred, pb.pred, "accuracy", BOOTSTRAP_RESAMPLES)
    return {"diff": ci.diff, "low": ci.low, "high": ci.high}


def summary_rows(loaded: LoadedRun, shape: tuple[int, int] | None) -> list[dict[str, Any]]:
    """One row per build for the summary table, latency at ``shape``."""
    run = loaded.run
    torch32 = latency.find_build(run.builds, "pytorch", "fp32")
    ort32 = latency.find_build(run.builds, "onnxruntime", "fp32")
    rows = []
    for b in run.builds:
        acc, lat = b.accuracy, latency_at(b, shape)
        known = acc is not None and math.isfinite(acc.accuracy)
        ci = stats.wilson_interval(round(acc.accuracy * acc.n), acc.n) if known else None
        rows.append(
            {
                "name": b.name,
                "is_reference": b.name == run.reference_build,
                "precision": b.precision,
                "backend": b.backend,
                "device": b.device,
                "kernels": b.kernels,
                "accuracy": acc.accuracy if acc else math.nan,
                "ci_low": ci[0] if ci else math.nan,
                "ci_high": ci[1] if ci else math.nan,
                "n": acc.n if acc else 0,
                "macro_f1": acc.macro_f1 if acc else math.nan,
                "delta": _delta(loaded, run.reference_build, b.name),
                "agreement": acc.agreement if acc else math.nan,
                "cosine_min": acc.logit_cosine_min if acc else math.nan,
                "kl": acc.fidelity.kl_mean if acc else math.nan,
                "max_dp": acc.fidelity.max_abs_dp if acc else math.nan,
                "p50": lat.p50_ms if lat else math.nan,
                "p99": lat.p99_ms if lat else math.nan,
                "throughput": lat.throughput_seq_per_s if lat else math.nan,
                "peak_rss_mb": b.peak_rss_mb,
                "coverage": b.int8_coverage.share if b.int8_coverage else None,
                "coverage_detail": _coverage_text(b),
                "noisy": bool(lat and latency.noise(lat).warnings),
                "speedup_torch": latency.speedup_cell(torch32, b, shape),
                "speedup_ort": latency.speedup_cell(ort32, b, shape),
            }
        )
    return rows


def _coverage_text(b: BuildResult) -> str:
    c = b.int8_coverage
    if c is None:
        return ""
    return f"{c.quantized_matmul} of {c.quantized_matmul + c.float_matmul} ({c.detail})"


def confusion_tables(run: RunResult) -> list[dict[str, Any]]:
    """Per-build confusion matrices with a shade (0..1) per cell, row-normalised."""
    out = []
    for b in run.builds:
        if b.accuracy is None:
            continue
        m = np.asarray(b.accuracy.confusion, dtype=np.float64)
        rows = m.sum(axis=1, keepdims=True)
        shade = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        k = m.shape[0]
        names = list(run.labels) + [str(i) for i in range(len(run.labels), k)]
        cells = [
            [{"count": int(m[i, j]), "shade": round(float(shade[i, j]), 3)} for j in range(k)]
            for i in range(k)
        ]
        out.append({"name": b.name, "labels": names[:k], "rows": cells})
    return out


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _label(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else str(i)


def changed_samples(loaded: LoadedRun) -> list[dict[str, Any]]:
    """Per non-reference build: the flipped samples and the largest logit changes."""
    run = loaded.run
    ref = loaded.predictions.get(run.reference_build)
    if ref is None:
        return []
    texts = load_test_texts(loaded.run_dir)
    out = []
    for b in run.builds:
        p = loaded.predictions.get(b.name)
        if b.name == run.reference_build or p is None or not np.array_equal(p.idx, ref.idx):
            continue
        change = np.linalg.norm(p.logits - ref.logits, axis=1) if p.logits.size else np.zeros(0)
        flipped = np.flatnonzero(p.pred != ref.pred)
        flipped = flipped[np.argsort(-change[flipped], kind="stable")][:TOP_SAMPLES]
        top = np.argsort(-change, kind="stable")[:TOP_SAMPLES]

        def row(i: int, p: Predictions = p, change: np.ndarray = change) -> dict[str, Any]:
            return {
                "idx": int(p.idx[i]),
                "text": _clip(texts.get(int(p.idx[i]), "(text not saved)")),
                "label": _label(run.labels, int(p.label[i])),
                "ref_pred": _label(run.labels, int(ref.pred[i])),
                "pred": _label(run.labels, int(p.pred[i])),
                "change": float(change[i]),
                "flipped": bool(p.pred[i] != ref.pred[i]),
                "ref_logits": [float(x) for x in ref.logits[i]],
                "logits": [float(x) for x in p.logits[i]],
            }

        out.append(
            {
                "name": b.name,
                "n_flipped": int(np.sum(p.pred != ref.pred)),
                "n": len(p),
                "flipped": [row(int(i)) for i in flipped],
                "most_changed": [row(int(i)) for i in top],
            }
        )
    return out


def build_notes(run: RunResult, shape: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The records' notes per build, plus facts the numbers imply (INT8 no faster, low coverage)."""
    out = []
    for b in run.builds:
        notes = list(b.notes)
        fp32 = latency.find_build(run.builds, b.backend, "fp32")
        p = find_precision(b.precision)
        if p is not None and p.int8 and fp32 is not None:
            s = _speedup(fp32, b, shape)
            if math.isfinite(s) and s < 1.05 and shape and not any("speed" in n for n in notes):
                notes.append(
                    f"{b.precision} is no faster than {fp32.name} here (×{s:.2f} at batch "
                    f"{shape[0]} × seq {shape[1]}) on {run.provenance.cpu}"
                )
        notes += class_shift_notes(run, b)
        if notes:
            out.append({"name": b.name, "notes": notes})
    return out


def class_shift_notes(run: RunResult, b: BuildResult) -> list[str]:
    """Per-class shifts vs the reference that accuracy can hide (false positives up at equal
    accuracy), from the record's fidelity."""
    if b.accuracy is None or b.name == run.reference_build:
        return []
    out = []
    for c in b.accuracy.fidelity.per_class:
        if c.false_pos_ref < 0 or c.false_pos == c.false_pos_ref:
            continue
        name = run.labels[c.label] if 0 <= c.label < len(run.labels) else str(c.label)
        recall = ""
        if math.isfinite(c.recall_ref) and math.isfinite(c.recall):
            recall = f", recall {c.recall_ref * 100:.1f}% -> {c.recall * 100:.1f}%"
        out.append(
            f"class {name!r}: false positives {c.false_pos_ref} -> {c.false_pos} "
            f"({c.false_pos - c.false_pos_ref:+d}){recall}; {c.flips_in} predictions flipped "
            f"into it, {c.flips_out} out of it (vs {run.reference_build})"
        )
    return out


def gate_verdict(run_dir: Path) -> tuple[GateDecision | None, str]:
    """The run's gate.json (decision, "") or (None, problem) when absent or unreadable."""
    path = run_dir / GATE_FILE
    if not path.is_file():
        return None, ""
    try:
        return load_decision(path), ""
    except ResultsError as exc:
        return None, f"gate.json is present but unreadable: {exc}"


def compare_rows(a: LoadedRun, b: LoadedRun) -> dict[str, Any]:
    """Builds present in both runs: accuracy and p50 side by side, paired CI when possible."""
    shape = primary_shape(a.run)
    same_set = a.run.test_set_sha256 == b.run.test_set_sha256
    names = [x.name for x in a.run.builds if x.name in {y.name for y in b.run.builds}]
    rows, hw_differs = [], False
    for name in names:
        ba, bb = a.run.build(name), b.run.build(name)
        la, lb = latency_at(ba, shape), latency_at(bb, shape)
        hw_differs |= hardware(a.run, ba) != hardware(b.run, bb)
        delta = None
        pa, pb = a.predictions.get(name), b.predictions.get(name)
        if same_set and pa is not None and pb is not None and np.array_equal(pa.idx, pb.idx):
            ci = stats.paired_bootstrap(pa.label, pb.pred, pa.pred, "accuracy", BOOTSTRAP_RESAMPLES)
            delta = {"diff": ci.diff, "low": ci.low, "high": ci.high}
        rows.append(
            {
                "name": name,
                "acc_a": ba.accuracy.accuracy if ba.accuracy else math.nan,
                "acc_b": bb.accuracy.accuracy if bb.accuracy else math.nan,
                "delta": delta,
                "p50_a": la.p50_ms if la else math.nan,
                "p50_b": lb.p50_ms if lb else math.nan,
            }
        )
    return {
        "run_a": a.run.run_id,
        "run_b": b.run.run_id,
        "same_test_set": same_set,
        "hardware_differs": hw_differs,
        "hardware_a": a.run.provenance.cpu,
        "hardware_b": b.run.provenance.cpu,
        "shape": shape,
        "rows": rows,
    }
