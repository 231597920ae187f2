"""Optional report sections, each from a typed record other stages leave in the run directory.

``calibration_comparison.json`` (``workbench calibrate --methods ...``, a CalibrationComparison),
``calibset_report.json`` (the representativeness check, a RepresentativenessReport) and
``traffic.json`` (a TrafficRecord). A record that is present but unreadable shows as a problem
line naming the file and the fix, never as a guess at its keys.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.errors import ResultsError
from workbench.report import charts
from workbench.results.calibration import (
    CalibrationComparison,
    MethodComparison,
    TensorComparison,
    TensorHistogram,
    comparison_path,
    load_comparison,
)
from workbench.results.representativeness import (
    RepresentativenessReport,
    calibset_report_path,
    load_report,
)
from workbench.results.serde import to_dict
from workbench.results.traffic import load_traffic_record

log = logging.getLogger(__name__)

MAX_HISTOGRAMS = 12

# MethodComparison columns (workbench/results/calibration.py): field, title, format.
# Not shown: logit_cosine_min (two-class logits lie near a line through 0, so any one flipped
# prediction has cosine ≈ −1: it read −1.0000 for every method) and logit_max_abs_err.
METHOD_COLUMNS = (
    ("method", "method", "text"),
    ("accuracy", "accuracy", "pct"),
    ("delta", "Δ vs ORT FP32 (pts)", "pts"),
    ("agreement", "agreement vs ORT FP32", "pct"),
    ("logit_cosine_mean", "logit cos mean", "num4"),
    ("sqnr_db_mean", "SQNR mean (dB)", "db"),
    ("sqnr_db_min", "SQNR min (dB)", "db"),
    ("clipped_fraction_mean", "clipped", "pct3"),
)
SUMMARY_KEYS = (
    "best_method",
    "fp32_accuracy",
    "n_calibration_samples",
    "n_test",
    "sqnr_samples",
    "per_channel",
    "statistics_seconds",  # wall time of the statistics pass (the log's stage time)
    "statistics_peak_rss_mb",
    "calibration_set_sha256",
    "model_sha256",
)


def _db(v: float) -> float:
    """SQNR in dB; NaN (null in the JSON) means no quantization noise at all: +inf."""
    return math.inf if math.isnan(v) else v


def _method_row(
    m: MethodComparison, cmp: CalibrationComparison, builds: Mapping[str, str]
) -> dict[str, Any]:
    """One method's table row (JSON values: null stays None); ``builds`` maps a model sha256 to
    the run's build that ran that very file."""
    row: dict[str, Any] = to_dict(m)
    if math.isfinite(m.accuracy) and math.isfinite(cmp.fp32_accuracy):
        row["delta"] = m.accuracy - cmp.fp32_accuracy
    row["best"] = m.method == cmp.best_method
    row["build"] = builds.get(m.qdq_model_sha256, "")
    return row


def _tensor_view(t: TensorHistogram | TensorComparison) -> dict[str, Any]:
    """A tensor's thresholds and SQNR per method; a histogram chart when it has one."""
    thresholds = {k: v for k, v in t.amax.items() if not math.isnan(v)}
    chart = None
    if isinstance(t, TensorHistogram) and t.counts and len(t.edges) == len(t.counts) + 1:
        chart = charts.threshold_histogram(t.name, t.counts, t.edges, thresholds)
    return {
        "name": t.name,
        "chart": chart,
        "thresholds": thresholds,
        "sqnr": {k: _db(v) for k, v in t.sqnr_db.items()},
        "absmax": t.absmax,
        "sensitivity": t.sensitivity_db,
    }


def calibration_section(
    run_dir: Path, builds: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Method table, histograms of the most sensitive tensors with each method's threshold,
    and per-tensor SQNR, from the run's CalibrationComparison (docs/calibration.md).
    ``builds`` (model sha256 -> build name) marks the method whose Q/DQ model a build ran."""
    if not comparison_path(run_dir).is_file():
        return None
    try:
        cmp = load_comparison(run_dir)
    except ResultsError as exc:
        return {"problem": str(exc)}
    rows = [_method_row(m, cmp, builds or {}) for m in cmp.methods]
    sensitive = [_tensor_view(t) for t in cmp.sensitive_tensors[:MAX_HISTOGRAMS]]
    methods = [m.method for m in cmp.methods]
    if not methods:
        methods = sorted({m for t in sensitive for m in (*t["thresholds"], *t["sqnr"])})
    return {
        "problem": "",
        "columns": [{"key": k, "title": t, "fmt": f} for k, t, f in METHOD_COLUMNS],
        "rows": rows,
        "tensors": sensitive,
        "all_tensors": [_tensor_view(t) for t in cmp.all_tensors],
        "methods": methods,
        "summary": {k: to_dict(getattr(cmp, k)) for k in SUMMARY_KEYS},
    }


def _bucket_labels(edges: list[float], n_bins: int) -> list[str]:
    """Labels for bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    labels, lo = [], None
    for i in range(n_bins):
        hi = edges[i] if i < len(edges) else None
        if lo is None:
            labels.append(f"≤ {hi:g}" if hi is not None else "all")
        elif hi is None:
            labels.append(f"> {lo:g}")
        else:
            labels.append(f"{lo:g}–{hi:g}")
        lo = hi
    return labels


def calibset_section(run_dir: Path) -> dict[str, Any] | None:
    """Representativeness verdict, warnings, length/label comparison, when the record exists."""
    if not calibset_report_path(run_dir).is_file():
        return None
    try:
        rec = load_report(run_dir)
    except ResultsError as exc:
        return {"problem": str(exc)}
    chart = None
    cal, tgt = rec.calibration_bin_share, rec.target_bin_share
    if cal and tgt and len(cal) == len(tgt):
        chart = charts.share_bars(
            _bucket_labels(rec.length_bin_edges, len(cal)),
            cal,
            tgt,
            ("calibration set", rec.target),
            "token length (target deciles)",
        )
    labels = []
    cs, ts = rec.calibration_label_share, rec.target_label_share
    if cs is not None and ts is not None:
        names = rec.label_names
        for i, (a, b) in enumerate(zip(cs, ts, strict=False)):
            labels.append({"label": names[i] if i < len(names) else str(i), "cal": a, "tgt": b})
    return {
        "problem": "",
        "verdict": rec.verdict,
        "verdict_class": {"representative": "pass", "drifting": "warn"}.get(rec.verdict, "fail"),
        "warnings": rec.warnings,
        "target": rec.target,
        "calibration_set": rec.calibration_set,
        "metrics": _measures(rec),
        "lengths": {
            "calibration": to_dict(rec.calibration_lengths),
            "target": to_dict(rec.target_lengths),
        },
        "labels": labels,
        "chart": chart,
        "profile": rec.profile_suggestion,
    }


def _measures(rec: RepresentativenessReport) -> dict[str, float]:
    """The record's finite scalar measures (PSI, KS, distances, coverage...), in field order."""
    out = {}
    for f in dataclasses.fields(rec):
        v = getattr(rec, f.name)
        if f.name == "schema_version" or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out[f.name] = v
    return out


MAX_DISAGREEMENTS = 200  # rows listed in the report (all are in disagreements.csv)


def traffic_section(run_dir: Path) -> dict[str, Any] | None:
    """The unlabelled-traffic record (``traffic.json``): per-build disagreement and its bound,
    labelled counts, and the disagreeing texts for a person to read (autoescaped)."""
    try:
        rec = load_traffic_record(run_dir)
    except ResultsError as exc:
        return {"problem": str(exc)}
    if rec is None:
        return None
    return {
        "problem": "",
        "record": rec,
        "builds": [b for b in rec.builds if b.name != rec.baseline],
        "columns": list(rec.disagreements[0].predictions) if rec.disagreements else [],
        "rows": rec.disagreements[:MAX_DISAGREEMENTS],
        "more": max(len(rec.disagreements) - MAX_DISAGREEMENTS, 0),
    }
