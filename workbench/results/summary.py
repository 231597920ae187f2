"""The summary table of a run as a pandas DataFrame (CLI, notebook and report share it)."""

from __future__ import annotations

import math

import pandas as pd

from workbench.errors import ResultsError
from workbench.results import fmt
from workbench.results.records import BuildResult, LatencyResult, RunResult


def latency_at(build: BuildResult, batch: int, seq: int | None = None) -> LatencyResult | None:
    """The build's latency record at ``batch`` (and ``seq``), if measured."""
    for lat in build.latency:
        if lat.batch_size == batch and (seq is None or lat.seq_len == seq):
            return lat
    return None


def speedup(run: RunResult, build: BuildResult, baseline: str, batch: int) -> float:
    """Median-latency ratio baseline / build at one batch size (NaN when either is missing)."""
    try:
        base = run.build(baseline)
    except ResultsError:  # the baseline build is not part of this run
        return math.nan
    a, b = latency_at(base, batch), latency_at(build, batch)
    if a is None or b is None or not (a.p50_ms > 0 and b.p50_ms > 0):  # unmeasured, or NaN
        return math.nan
    return a.p50_ms / b.p50_ms


def summary_frame(run: RunResult) -> pd.DataFrame:
    """One row per build: accuracy, delta vs reference, agreement, latency, speed-ups, coverage."""
    ref = run.build(run.reference_build)
    ref_acc = ref.accuracy.accuracy if ref.accuracy else math.nan
    batches = sorted({lat.batch_size for b in run.builds for lat in b.latency})
    rows = []
    for b in run.builds:
        acc = b.accuracy
        row: dict[str, object] = {
            "build": b.name,
            "backend": b.backend,
            "precision": b.precision,
            "accuracy": acc.accuracy if acc else math.nan,
            "Δ acc (pts)": 100 * (acc.accuracy - ref_acc) if acc else math.nan,
            "macro F1": acc.macro_f1 if acc else math.nan,
            "agreement": acc.agreement if acc else math.nan,
            "KL": acc.fidelity.kl_mean if acc else math.nan,
        }
        for batch in batches:
            lat = latency_at(b, batch)
            row[f"p50 b{batch} (ms)"] = lat.p50_ms if lat else math.nan
            row[f"p99 b{batch} (ms)"] = lat.p99_ms if lat else math.nan
            row[f"seq/s b{batch}"] = lat.throughput_seq_per_s if lat else math.nan
        for batch in batches:
            row[f"× torch-fp32 b{batch}"] = speedup(run, b, "torch-fp32", batch)
            row[f"× ort-fp32 b{batch}"] = speedup(run, b, "ort-fp32", batch)
        row["peak RSS (MB)"] = b.peak_rss_mb
        row["INT8 coverage"] = b.int8_coverage.share if b.int8_coverage else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


WIDTH = 100  # terminal columns the default summary fits
# Compact table: (column of summary_frame, short header, format); "{b}" stands for each batch.
COMPACT = (
    ("build", "build", "{}"),
    ("precision", "precision", "{}"),
    ("accuracy", "acc", "{:.1%}"),
    ("Δ acc (pts)", "Δ pts", "signed"),
    ("agreement", "agree", "{:.1%}"),
    ("p50 b{b} (ms)", "p50 b{b} ms", "{:.1f}"),
    ("× ort-fp32 b{b}", "×ort b{b}", "ratio"),
    ("INT8 coverage", "int8", "{:.0%}"),
)
DROP_ORDER = ("agree", "int8", "precision")  # dropped in this order while still too wide


def _cell(spec: str, x: object) -> str:
    """One cell: "signed" and "ratio" use the shared helpers (no -0.00; a ratio that was not
    measured is —, a tiny one keeps its digits), anything else is a format string."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if spec == "signed":
        return fmt.signed(float(x))  # type: ignore[arg-type]
    if spec == "ratio":
        return fmt.ratio(float(x))  # type: ignore[arg-type]
    text = spec.format(x)
    return text.lstrip("-") if text.startswith("-") and float(text.strip("%")) == 0 else text


def _compact(df: pd.DataFrame) -> pd.DataFrame:
    """The few columns that decide a build, under short headers, as formatted text."""
    batches = sorted({int(c.split()[1][1:]) for c in df.columns if c.startswith("p50 b")})
    cols = {}
    for src, head, spec in COMPACT:
        for b in batches if "{b}" in src else [None]:
            name, title = src.format(b=b), head.format(b=b)
            if name in df.columns:
                cols[title] = [_cell(spec, x) for x in df[name]]
    return pd.DataFrame(cols)


def format_summary(run: RunResult, *, wide: bool = False, width: int = WIDTH) -> str:
    """The summary table as aligned text for the terminal.

    By default the few columns that decide a build, fitted to ``width`` characters (less
    important columns dropped first); ``wide=True`` prints every column of ``summary_frame``.
    Example: ``print(format_summary(run))`` or ``print(format_summary(run, wide=True))``.
    """
    df = summary_frame(run)
    if wide:
        return df.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="—")
    table = _compact(df)
    text = table.to_string(index=False)
    for col in DROP_ORDER:
        if max(map(len, text.splitlines())) <= width or col not in table.columns:
            continue
        table = table.drop(columns=col)
        text = table.to_string(index=False)
    note = (
        "Δ pts: accuracy vs the reference build; ×ort: p50 speed-up vs ort-fp32; "
        f"all {df.shape[1]} columns: --wide"
    )
    return text + "\n" + (note if len(note) <= width else "all columns: --wide")
