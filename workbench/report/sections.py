"""Optional report sections read from JSON files other stages leave in the run directory.

``calibration_comparison.json`` (``workbench calibrate --methods ...``) and
``calibset_report.json`` (the representativeness check). Each reader takes what it
recognises and keeps the rest as a raw key/value listing, so a newer file still shows.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.report import charts

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration_comparison.json"
CALIBSET_FILE = "calibset_report.json"
MAX_HISTOGRAMS = 12


def _read(path: Path) -> tuple[Any, str]:
    if not path.is_file():
        return None, ""
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path.name} is present but unreadable ({exc})"


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None


def _first(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if k in d), None)


def _numbers(v: Any) -> list[float] | None:
    if isinstance(v, list) and v and all(isinstance(x, int | float) for x in v):
        return [float(x) for x in v]
    return None


# Known MethodComparison columns (workbench/calibration/records.py): key, title, format.
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


def _db(v: Any) -> float | None:
    """SQNR in dB; null (NaN when loaded) means no quantization noise at all: +inf."""
    if v is None:
        return math.inf
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _method_rows(
    data: dict[str, Any], builds: Mapping[str, str]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """One row per method; known columns formatted, otherwise every scalar field as text.
    ``builds`` maps a model sha256 to the run's build that ran that very file."""
    methods = data.get("methods")
    if isinstance(methods, dict):  # {"entropy": {...}, ...}
        methods = [{"method": k, **v} for k, v in methods.items() if isinstance(v, dict)]
    if not isinstance(methods, list):
        return [], []
    rows = [dict(m) for m in methods if isinstance(m, dict)]
    fp32 = data.get("fp32_accuracy")
    for r in rows:
        acc = r.get("accuracy")
        if isinstance(fp32, int | float) and isinstance(acc, int | float):
            r["delta"] = acc - fp32
        r["best"] = r.get("method") == data.get("best_method")
        r["build"] = builds.get(str(r.get("qdq_model_sha256", "")), "")
    present = {k for r in rows for k in r}
    cols = [{"key": k, "title": t, "fmt": f} for k, t, f in METHOD_COLUMNS if k in present]
    if len(cols) <= 1:  # an unknown shape: show its scalar fields as they are
        keys: list[str] = []
        for r in rows:
            keys += [k for k, v in r.items() if _scalar(v) and k not in (*keys, "best", "build")]
        cols = [{"key": k, "title": k, "fmt": "text"} for k in keys]
    return cols, rows


def _tensor_view(t: dict[str, Any]) -> dict[str, Any]:
    name = str(_first(t, "name", "tensor") or "?")
    counts = _numbers(_first(t, "counts", "hist_counts", "histogram"))
    edges = _numbers(_first(t, "edges", "hist_edges", "bin_edges"))
    if counts and not edges:
        width = _first(t, "bin_width")
        if isinstance(width, int | float) and width > 0:
            edges = [width * i for i in range(len(counts) + 1)]
    raw_t = _first(t, "amax", "thresholds")
    thresholds = (
        {str(k): float(v) for k, v in raw_t.items() if isinstance(v, int | float)}
        if isinstance(raw_t, dict)
        else {}
    )
    raw_s = _first(t, "sqnr_db", "sqnr")
    sqnr = {str(k): _db(v) for k, v in raw_s.items()} if isinstance(raw_s, dict) else {}
    chart = None
    if counts and edges and len(edges) == len(counts) + 1:
        chart = charts.threshold_histogram(name, counts, edges, thresholds)
    return {
        "name": name,
        "chart": chart,
        "thresholds": thresholds,
        "sqnr": sqnr,
        "absmax": t.get("absmax"),
        "sensitivity": t.get("sensitivity_db"),
    }


def calibration_section(
    run_dir: Path, builds: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Method table, histograms of the most sensitive tensors with each method's threshold,
    and per-tensor SQNR, from ``calibration_comparison.json`` (docs/calibration.md).
    ``builds`` (model sha256 -> build name) marks the method whose Q/DQ model a build ran."""
    data, problem = _read(run_dir / CALIBRATION_FILE)
    if problem:
        return {"problem": problem}
    if not isinstance(data, dict):
        return None
    cols, rows = _method_rows(data, builds or {})
    raw = _first(data, "sensitive_tensors", "tensors") or []
    sensitive = [_tensor_view(t) for t in raw[:MAX_HISTOGRAMS] if isinstance(t, dict)]
    every = [_tensor_view(t) for t in data.get("all_tensors") or [] if isinstance(t, dict)]
    methods = [str(r.get("method")) for r in rows if r.get("method") is not None]
    if not methods:
        methods = sorted({m for t in sensitive for m in (*t["thresholds"], *t["sqnr"])})
    summary = {k: data[k] for k in SUMMARY_KEYS if k in data and _scalar(data[k])}
    return {
        "problem": "",
        "columns": cols,
        "rows": rows,
        "tensors": sensitive,
        "all_tensors": every,
        "methods": methods,
        "summary": summary,
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
    """Representativeness verdict, warnings, length/label comparison, when the file exists."""
    data, problem = _read(run_dir / CALIBSET_FILE)
    if problem:
        return {"problem": problem}
    if not isinstance(data, dict):
        return None
    chart = None
    edges = _numbers(data.get("length_bin_edges")) or []
    cal, tgt = _numbers(data.get("calibration_bin_share")), _numbers(data.get("target_bin_share"))
    if cal and tgt and len(cal) == len(tgt):
        chart = charts.share_bars(
            _bucket_labels(edges, len(cal)),
            cal,
            tgt,
            ("calibration set", str(data.get("target", "target"))),
            "token length (target deciles)",
        )
    metrics = {
        k: v
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "schema_version"
    }
    lengths = {
        side: data[key]
        for side, key in (("calibration", "calibration_lengths"), ("target", "target_lengths"))
        if isinstance(data.get(key), dict)
    }
    labels = []
    names = data.get("label_names") or []
    cs, ts = data.get("calibration_label_share"), data.get("target_label_share")
    if isinstance(cs, list) and isinstance(ts, list):
        for i, (a, b) in enumerate(zip(cs, ts, strict=False)):
            labels.append({"label": names[i] if i < len(names) else str(i), "cal": a, "tgt": b})
    verdict = str(data.get("verdict", "unknown"))
    return {
        "problem": "",
        "verdict": verdict,
        "verdict_class": {"representative": "pass", "drifting": "warn"}.get(verdict, "fail"),
        "warnings": [str(w) for w in data.get("warnings", []) if _scalar(w)],
        "target": str(data.get("target", "")),
        "calibration_set": str(data.get("calibration_set", "")),
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
        "lengths": lengths,
        "labels": labels,
        "chart": chart,
        "profile": data.get("profile_suggestion") or {},
    }


MAX_DISAGREEMENTS = 200  # rows listed in the report (all are in disagreements.csv)


def traffic_section(run_dir: Path) -> dict[str, Any] | None:
    """The unlabelled-traffic record (``traffic.json``): per-build disagreement and its bound,
    labelled counts, and the disagreeing texts for a person to read (autoescaped)."""
    from workbench.errors import ResultsError
    from workbench.results.traffic import load_traffic_record

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
