"""``render_sweep``: one self-contained ``sweep.html`` from ``sweep.json`` only.

Sections: every cell (with a link to its own report), one table and chart per axis
(accuracy drop and agreement with 95% CIs per axis value), and the accuracy × latency
Pareto front over all (cell, build) points. Same safety as the run report: no scripts,
no remote loads, autoescaped text.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.fileio import atomic_write_text
from workbench.report import charts
from workbench.results.sweep import (
    CellBuild,
    CellResult,
    SweepResult,
    load_sweep_result,
    pareto_cells,
)

log = logging.getLogger(__name__)

SWEEP_HTML = "sweep.html"
TEMPLATE = "sweep.html.j2"


def render_sweep(sweep_dir: str | Path, out: Path | None = None) -> Path:
    """Render ``sweep_dir/sweep.json`` to ``sweep_dir/sweep.html`` (or ``out``), atomically.

    Example::

        render_sweep("reports/sweeps/calibration-grid")
    """
    sweep = load_sweep_result(sweep_dir)
    from workbench.report.render import _environment

    html = _environment().get_template(TEMPLATE).render(**sweep_context(sweep))
    target = Path(out) if out is not None else Path(sweep_dir) / SWEEP_HTML
    atomic_write_text(target, html)
    log.info("sweep report written to %s", target)
    return target


def sweep_context(sweep: SweepResult) -> dict[str, Any]:
    """Everything the template shows (plain data), from the sweep record."""
    front = set(pareto_cells(sweep))
    return {
        "sweep": sweep,
        "version": __version__,
        "rendered_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_done": sum(c.status == "done" for c in sweep.cells),
        "axes": [_axis_section(sweep, axis) for axis in sweep.axes],
        "pareto": [
            {"cell": c, "build": b, "on_front": (c.key, b.name) in front}
            for c in sweep.cells
            for b in c.builds
            if (c.key, b.name) in front
        ],
        "pareto_chart": _pareto_chart(sweep),
    }


def _axis_section(sweep: SweepResult, axis: str) -> dict[str, Any]:
    """Per value of ``axis`` and build: cells, mean drop and agreement, widest CI bounds."""
    rows = []
    for value in sweep.axes[axis]:
        cells = [c for c in sweep.cells if c.params.get(axis) == value and c.builds]
        names = list(dict.fromkeys(b.name for c in cells for b in c.builds))
        for name in names:
            bs = [b for c in cells for b in c.builds if b.name == name]
            drops = [b for c in cells for b in _candidates(c) if b.name == name]
            rows.append(
                {
                    "value": value,
                    "build": name,
                    "cells": len(bs),
                    "drop": _mean([b.drop for b in drops]),
                    "drop_low": min((b.drop_low for b in drops), default=None, key=_key),
                    "drop_high": max((b.drop_high for b in drops), default=None, key=_key),
                    "agreement": _mean([b.agreement for b in bs]),
                    "agreement_low": min((b.agreement_low for b in bs), default=None, key=_key),
                    "agreement_high": max((b.agreement_high for b in bs), default=None, key=_key),
                }
            )
    failed = [c for c in sweep.cells if c.status != "done"]
    return {"axis": axis, "rows": rows, "chart": _axis_chart(sweep, axis),
            "failed": [c for c in failed if axis in c.params]}  # fmt: skip


def _key(x: float | None) -> float:
    return x if x is not None and math.isfinite(x) else math.nan


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def _axis_chart(sweep: SweepResult, axis: str) -> str | None:
    """Drop (points) with its 95% CI per cell, grouped by the axis value, one colour per build."""
    import matplotlib

    values = sweep.axes[axis]
    names = list(dict.fromkeys(b.name for c in sweep.cells for b in _candidates(c)))
    if not names:
        return None
    with matplotlib.rc_context(charts._RC):
        fig = charts._figure(6.4, 3.2)
        ax = fig.add_subplot()
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            for i, value in enumerate(values):
                bs = [b for c in sweep.cells if c.params.get(axis) == value
                      for b in _candidates(c) if b.name == name]  # fmt: skip
                for k, b in enumerate(bs):
                    x = i - 0.4 + width * (j + (k + 1) / (len(bs) + 1))
                    d, lo, hi = b.drop or 0.0, b.drop_low or 0.0, b.drop_high or 0.0
                    err = [[max(0.0, (d - lo) * 100)], [max(0.0, (hi - d) * 100)]]
                    ax.errorbar([x], [d * 100], yerr=err, fmt="o", ms=4, capsize=2,
                                color=charts.PALETTE[j % len(charts.PALETTE)],
                                label=name if i == 0 and k == 0 else None)  # fmt: skip
        ax.axhline(0, color="#9ca3af", lw=0.8)
        ax.set_xticks(range(len(values)), values)
        ax.set_xlabel(axis)
        ax.set_ylabel("accuracy drop (pts)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(loc="best", fontsize=7, frameon=False)
        return charts._to_uri(fig)


def _candidates(c: CellResult) -> list[CellBuild]:
    """Builds of a cell with a drop vs its baseline (the baseline itself left out)."""
    return [b for b in c.builds if b.drop is not None and b.name != c.baseline]


def _pareto_chart(sweep: SweepResult) -> str | None:
    pts = [
        (f"{i + 1}:{b.name}", b.p50_ms, b.accuracy, b.latency_shape)
        for i, c in enumerate(sweep.cells)
        for b in c.builds
        if b.p50_ms is not None and math.isfinite(b.p50_ms) and math.isfinite(b.accuracy)
    ]
    if not pts:
        return None
    names, lat, acc, shapes = zip(*pts, strict=True)
    label = shapes[0] if len(set(shapes)) == 1 else "first shape of each cell"
    return charts.accuracy_latency_scatter(names, lat, acc, label)
