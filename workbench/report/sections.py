"""Optional report sections read from JSON files other stages leave in the run directory.

``calibration_comparison.json`` (``workbench calibrate --methods ...``) and
``calibset_report.json`` (the representativeness check). Each reader takes what it
recognises and keeps the rest as a raw key/value listing, so a newer file still shows.
"""

from __future__ import annotations

import json
import logging
import math
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


def _method_rows(data: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Methods as a table: one row per method, the scalar fields as columns."""
    methods = _first(data, "methods", "results")
    if isinstance(methods, dict):  # {"entropy": {...}, ...}
        methods = [{"method": k, **v} for k, v in methods.items() if isinstance(v, dict)]
    if not isinstance(methods, list):
        return [], []
    rows = [m for m in methods if isinstance(m, dict)]
    cols: list[str] = []
    for r in rows:
        cols += [k for k, v in r.items() if _scalar(v) and k not in cols]
    return cols, [{c: r.get(c) for c in cols} for r in rows]


def _tensor_view(t: dict[str, Any]) -> dict[str, Any] | None:
    name = str(_first(t, "name", "tensor") or "?")
    counts = _numbers(_first(t, "hist_counts", "counts", "histogram"))
    edges = _numbers(_first(t, "hist_edges", "bin_edges", "edges"))
    if counts and not edges:
        hmax = _first(t, "hist_max", "histogram_max", "range_max")
        if isinstance(hmax, int | float) and hmax > 0:
            edges = [hmax * i / len(counts) for i in range(len(counts) + 1)]
    thresholds = _first(t, "thresholds", "amax")
    thresholds = (
        {str(k): float(v) for k, v in thresholds.items() if isinstance(v, int | float)}
        if isinstance(thresholds, dict)
        else {}
    )
    sqnr = _first(t, "sqnr_db", "sqnr")
    sqnr = (
        {str(k): float(v) for k, v in sqnr.items() if isinstance(v, int | float)}
        if isinstance(sqnr, dict)
        else {}
    )
    chart = None
    if counts and edges and len(edges) == len(counts) + 1:
        chart = charts.threshold_histogram(name, counts, edges, thresholds)
    return {"name": name, "chart": chart, "thresholds": thresholds, "sqnr": sqnr}


def calibration_section(run_dir: Path) -> dict[str, Any] | None:
    """Method table, per-tensor histograms with thresholds, and SQNR, when the file exists."""
    data, problem = _read(run_dir / CALIBRATION_FILE)
    if problem:
        return {"problem": problem}
    if not isinstance(data, dict):
        return None
    cols, rows = _method_rows(data)
    tensors_raw = _first(data, "tensors", "sensitive_tensors") or []
    tensors = [
        v
        for t in tensors_raw[:MAX_HISTOGRAMS]
        if isinstance(t, dict) and (v := _tensor_view(t)) is not None
    ]
    methods = sorted({m for t in tensors for m in (*t["thresholds"], *t["sqnr"])})
    known = {"methods", "results", "tensors", "sensitive_tensors"}
    extra = {k: v for k, v in data.items() if k not in known and _scalar(v)}
    return {
        "problem": "",
        "columns": cols,
        "rows": rows,
        "tensors": tensors,
        "sqnr_methods": methods,
        "extra": extra,
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
