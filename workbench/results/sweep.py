"""Sweep records: one ``CellResult`` per cell (its own ``cell.json``) and the ``SweepResult``
that collects them (``sweep.json``), plus a pandas view of them for notebooks.

Cells are keyed by the content hash of their experiment, so a sweep started again reuses
every cell whose record says it finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ResultsError
from workbench.results.records import Provenance, load_record, save_record

if TYPE_CHECKING:
    import pandas as pd

SWEEP_FILE = "sweep.json"
CELL_FILE = "cell.json"
CELLS_DIR = "cells"
DONE, FAILED = "done", "failed"


@dataclass(frozen=True)
class CellBuild:
    """One build of one cell: accuracy, drop vs the cell's baseline and agreement, 95% CIs."""

    name: str
    backend: str
    precision: str
    device: str
    accuracy: float
    accuracy_low: float  # Wilson interval
    accuracy_high: float
    drop: float | None  # baseline accuracy - this build's (positive = worse); None: no baseline
    drop_low: float | None  # paired bootstrap interval of the drop
    drop_high: float | None
    agreement: float  # share of predictions equal to the reference build's
    agreement_low: float  # Wilson interval
    agreement_high: float
    p50_ms: float | None  # at the cell's first latency shape
    latency_shape: str  # "1x32"


@dataclass(frozen=True)
class CellPlacement:
    """Where Ray ran a cell and what it reserved there."""

    node: str  # host name
    node_id: str  # Ray node id
    gpu_ids: list[str]  # GPUs Ray assigned (CUDA_VISIBLE_DEVICES inside the task)
    num_cpus: float
    num_gpus: float
    timing: bool  # held the node's one ``timing`` slot (CPU latency measured alone)


@dataclass(frozen=True)
class CellResult:
    """One cell of a sweep: its axis values, outcome, where it ran and what it measured."""

    schema_version: int
    key: str  # content hash of the cell's experiment (its folder name under cells/)
    name: str
    params: dict[str, str]  # axis -> value as shown in tables
    status: str  # "done" | "failed"
    error: str  # "" when done: the failure as one line otherwise
    attempts: int
    wall_s: float
    run_dir: str  # relative to the sweep folder
    report: str  # report.html relative to the sweep folder ("" when failed)
    baseline: str  # build the drop is measured against ("" when none)
    reference: str  # build agreement is measured against
    builds: list[CellBuild]
    gate_passed: bool | None  # None: no gate ran
    placement: CellPlacement | None
    finished_utc: str
    # the gate's verdict: "PASS" | "FAIL" | "INCONCLUSIVE" (worst over the cell's candidates),
    # "" when no gate ran; defaulted so cell records written before it still load
    gate_verdict: str = ""


@dataclass(frozen=True)
class SweepResult:
    """Every cell of one sweep, in grid order; the sweep report's only input."""

    schema_version: int
    name: str
    source: str  # sweep file
    axes: dict[str, list[str]]  # axis -> values as shown, in file order
    cells: list[CellResult]
    reused: list[str]  # keys of cells finished by an earlier invocation and not recomputed
    cluster: str  # "local" or the Ray address joined
    num_cpus: float  # cluster resources seen by the sweep
    num_gpus: float
    wall_s: float
    provenance: Provenance

    @property
    def failed(self) -> list[CellResult]:
        """Cells that did not finish."""
        return [c for c in self.cells if c.status != DONE]


def save_cell(cell: CellResult, cell_dir: str | Path) -> Path:
    """Write ``cell.json`` into the cell's folder."""
    return save_record(cell, Path(cell_dir) / CELL_FILE)


def load_cell(cell_dir: str | Path) -> CellResult:
    """Read ``cell.json`` from a cell's folder."""
    return load_record(CellResult, Path(cell_dir) / CELL_FILE)


def save_sweep(sweep: SweepResult, out_dir: str | Path) -> Path:
    """Write ``sweep.json`` into the sweep folder."""
    return save_record(sweep, Path(out_dir) / SWEEP_FILE)


def load_sweep_result(path: str | Path) -> SweepResult:
    """Read ``sweep.json`` (a sweep folder or the file itself)."""
    p = Path(path)
    p = p if p.suffix == ".json" else p / SWEEP_FILE
    if not p.is_file():
        raise ResultsError(f"{p} does not exist; run `workbench sweep SWEEP.toml` first")
    return load_record(SweepResult, p)


def sweep_frame(sweep: SweepResult) -> pd.DataFrame:
    """One row per (cell, build): axis values as columns, then status and the measurements.

    Example::

        df = sweep_frame(load_sweep_result("reports/sweeps/grid"))
        df.groupby("calibration.method")["drop"].mean()
    """
    import pandas as pd

    rows = []
    for c in sweep.cells:
        base = {**c.params, "cell": c.key, "status": c.status, "error": c.error}
        if not c.builds:
            rows.append(base)
        for b in c.builds:
            row = {**base, "build": b.name, "backend": b.backend, "precision": b.precision}
            row.update({k: getattr(b, k) for k in _MEASURES})
            row["baseline"] = c.baseline
            rows.append(row)
    columns = [*sweep.axes, "cell", "status", "build", "backend", "precision", *_MEASURES]
    df = pd.DataFrame(rows)
    for col in [*columns, "baseline", "error"]:
        if col not in df.columns:
            df[col] = None
    return df[[*columns, "baseline", "error"]]


_MEASURES = (
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "drop",
    "drop_low",
    "drop_high",
    "agreement",
    "agreement_low",
    "agreement_high",
    "p50_ms",
    "latency_shape",
)


def pareto_cells(sweep: SweepResult) -> list[tuple[str, str]]:
    """(cell key, build) pairs not beaten on both p50 latency (lower) and accuracy (higher)."""
    points = [
        (c.key, b.name, b.p50_ms, b.accuracy)
        for c in sweep.cells
        for b in c.builds
        if b.p50_ms is not None and math.isfinite(b.p50_ms) and math.isfinite(b.accuracy)
    ]
    points.sort(key=lambda p: (p[2], -p[3]))
    front, best = [], -math.inf
    for key, name, _lat, acc in points:
        if acc > best:
            front.append((key, name))
            best = acc
    return front
