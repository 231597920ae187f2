"""``render_search``: one self-contained ``search.html`` from ``search.json`` only.

Sections: the verdict on the gate split (and why it carries no selection bias), the
layer × sub-layer map of the sensitivity ranking, every candidate scored, and the
accuracy × latency Pareto front. Same safety as the run report: no scripts, autoescaped.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.fileio import atomic_write_text
from workbench.results.records import load_record
from workbench.results.search import SEARCH_FILE, SearchRecord

log = logging.getLogger(__name__)

SEARCH_HTML = "search.html"
_LAYER = re.compile(r"layer\.(\d+)\.(.+)$")


def render_search(search_dir: str | Path, out: Path | None = None) -> Path:
    """Render ``search_dir/search.json`` to ``search_dir/search.html`` (or ``out``)."""
    record = load_record(SearchRecord, Path(search_dir) / SEARCH_FILE)
    from workbench.report.render import _environment

    html = _environment().get_template("search.html.j2").render(**search_context(record))
    target = Path(out) if out is not None else Path(search_dir) / SEARCH_HTML
    atomic_write_text(target, html)
    log.info("search report written to %s", target)
    return target


def search_context(rec: SearchRecord) -> dict[str, Any]:
    """Plain data for the template: heat map cells, trials sorted by latency, the front."""
    return {
        "rec": rec,
        "version": __version__,
        "rendered_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "heat": heat_map(rec.ranking),
        "trials": sorted(rec.trials, key=lambda t: (t.latency_ms != t.latency_ms, t.latency_ms)),
        "speedup": (rec.fp32_latency_ms / rec.best.latency_ms) if rec.best else None,
    }


def heat_map(ranking: list[str]) -> dict[str, Any]:
    """Rank of each (layer, sub-layer) in the ranking (0 = most harmful), shade 1 -> 0."""
    cells: dict[tuple[int, str], int] = {}
    for rank, module in enumerate(ranking):
        m = _LAYER.search(module)
        if m:
            cells[(int(m.group(1)), m.group(2))] = rank
    layers = sorted({k[0] for k in cells})
    subs = sorted({k[1] for k in cells})
    n = max(len(ranking) - 1, 1)
    rows = [
        {
            "layer": layer,
            "cells": [
                {"rank": cells.get((layer, s)), "shade": 1 - cells[(layer, s)] / n}
                if (layer, s) in cells
                else {"rank": None, "shade": 0.0}
                for s in subs
            ],
        }
        for layer in layers
    ]
    return {"subs": subs, "rows": rows}
