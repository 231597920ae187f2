"""``render_report``: one self-contained HTML file per run, from its records only.

No network: CSS is embedded, charts are SVG data URIs, and a Content-Security-Policy
forbids scripts and remote loads. Templates autoescape, so dataset text (untrusted)
is always shown as text.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.fileio import atomic_write_text
from workbench.report import charts, context, latency, sections, text
from workbench.results import fmt, stats
from workbench.results.serde import to_dict

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"


def _fmt(x: Any, spec: str, suffix: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return text.number(x, spec) + suffix


def _pct(x: Any, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else fmt.fixed(x * 100, digits) + "%"


def _pts(x: Any) -> str:
    """A difference as signed points with a real minus sign."""
    return "—" if x is None or not math.isfinite(x) else fmt.signed(x * 100)


def _db(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return "∞" if math.isinf(x) else f"{x:.1f}"


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("workbench.report", "templates"),
        autoescape=True,  # every template, whatever its extension: dataset text is untrusted
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=_pct,
        pts=_pts,
        ms=lambda x: _fmt(x, ".2f"),
        num=text.number,
        code=text.code_spans,
        x=lambda x: _fmt(x, ".2f", "×"),
        mb=lambda x: _fmt(x, ".0f"),
        db=_db,
    )
    return env


def _charts(
    loaded: context.LoadedRun, shape: tuple[int, int] | None, gate: tuple[int, int] | None
) -> dict[str, str | None]:
    run = loaded.run
    out: dict[str, str | None] = {"scatter": None, "latency": None}
    if shape is None:
        return out
    pts = []
    for b in run.builds:
        lat = context.latency_at(b, shape)
        if b.accuracy and lat and math.isfinite(lat.p50_ms) and math.isfinite(b.accuracy.accuracy):
            a = b.accuracy
            ci = stats.wilson_interval(round(a.accuracy * a.n), a.n)
            med = latency.median_ci(lat.samples_ms) or (math.nan, math.nan)
            pts.append((b.name, lat.p50_ms, a.accuracy, ci, med))
    if pts:
        names, lat_ms, acc, acc_ci, lat_ci = zip(*pts, strict=True)
        label = latency.shape_label(shape) + (" (the gate's shape)" if shape == gate else "")
        out["scatter"] = charts.accuracy_latency_scatter(names, lat_ms, acc, label, acc_ci, lat_ci)
    shapes = latency.shapes(run.builds)
    series = [
        {b.name: list(x.samples_ms) for b in run.builds if (x := latency.at(b, s)) and x.samples_ms}
        for s in shapes
    ]
    keep = [i for i, s in enumerate(series) if s]
    if keep:
        titles = [
            latency.shape_label(shapes[i]) + (" · judged by the gate" if shapes[i] == gate else "")
            for i in keep
        ]
        out["latency"] = charts.latency_distribution(titles, [series[i] for i in keep])
    return out


def build_context(run_dir: str | Path, compare: str | Path | None = None) -> dict[str, Any]:
    """Everything the template shows (plain data), from the run's records."""
    loaded = context.LoadedRun.load(run_dir)
    run = loaded.run
    decision, gate_problem = context.gate_verdict(loaded.run_dir)
    gate = latency.gate_shape(decision)
    shape = context.headline_shape(run, decision)
    comparison = None
    if compare is not None:
        other = context.LoadedRun.load(compare)
        loaded.problems += [f"compare run: {p}" for p in other.problems]
        comparison = context.compare_rows(loaded, other)
    samples = context.changed_samples(loaded)
    flipped = [s["name"] for s in samples if s["n_flipped"]]
    rows = latency.latency_rows(run.builds, gate)
    gate_latency = (
        latency.gate_latency(run.builds, run.run_id, decision, run.speedups) if decision else None
    )
    return {
        "run": run,
        "version": __version__,
        "rendered_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "gate": decision,
        "gate_problem": gate_problem,
        "gate_shape": gate,
        "gate_latency": gate_latency,
        "shape": shape,
        "shapes": latency.shapes(run.builds),
        "summary": context.summary_rows(loaded, shape),
        "latency_rows": rows,
        "noisy_rows": [r for r in rows if r["noisy"]],
        "confusion": context.confusion_tables(run),
        "samples": samples,
        "open_samples": flipped[0] if flipped else (samples[0]["name"] if samples else ""),
        "notes": context.build_notes(run, shape),
        "calibration": sections.calibration_section(
            loaded.run_dir, {b.model_sha256: b.name for b in run.builds if b.model_sha256}
        ),
        "calibset": sections.calibset_section(loaded.run_dir),
        "traffic": sections.traffic_section(loaded.run_dir),
        "comparison": comparison,
        "charts": _charts(loaded, shape, gate),
        "problems": loaded.problems,
        "provenance": to_dict(run.provenance),
        "model_paths": {
            b.name: text.display_path(b.model_path, loaded.run_dir) for b in run.builds
        },
        "calibration_summary": to_dict(run.calibration) if run.calibration else None,
        "config_json": json.dumps(to_dict(run.experiment), indent=2, sort_keys=True, default=str),
        "speedup_resamples": latency.RESAMPLES,
        "noise_limits": {
            "tail": latency.MAX_TAIL,
            "spread": latency.MAX_SPREAD,
            "drift": latency.MAX_DRIFT,
        },
    }


def render_report(
    run_dir: str | Path, compare: str | Path | None = None, out: Path | None = None
) -> Path:
    """Render ``run_dir``'s records to ``run_dir/report.html`` (or ``out``), atomically.

    Example::

        path = render_report("reports/20250101-120000-rotten_tomatoes")
        path = render_report("reports/new", compare="reports/last-release")
    """
    run_path = Path(run_dir)
    run_path = run_path.parent if run_path.suffix == ".json" else run_path
    ctx = build_context(run_path, compare)
    html = _environment().get_template(TEMPLATE).render(**ctx)
    target = Path(out) if out is not None else run_path / REPORT_FILE
    atomic_write_text(target, html)
    log.info("report written to %s", target)
    return target
