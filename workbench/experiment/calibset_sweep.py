"""``workbench calibset sweep``: calibration-set size × sampling seed, as a sweep on Ray.

One way to sweep: the N × seed grid becomes an ordinary sweep (``[axes]
calibration.n`` and ``calibration.seed``) of an experiment with the ORT FP32 and static
INT8 builds, run by the Ray engine (resumable, cells cached). This module only writes
that grid and summarizes it per N: INT8 accuracy and agreement across seeds, and how
much the ranges themselves move between seeds (``amax_spread``).

Example::

    spec = calibset_sweep_spec([128, 512], [0, 1, 2])
    result, out = run_sweep(spec, SweepOptions("reports/calibset-sweep"))
    print(summarize(result, out))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.experiment.sweep import SweepSpec, parse_sweep
from workbench.results.sweep import SweepResult

INT8_BUILD = "ort-int8-static"
TABLE_FILE = "calibration_table.json"


def calibset_sweep_spec(
    ns: Sequence[int],
    seeds: Sequence[int],
    *,
    data: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    n_test: int | None = 1000,
) -> SweepSpec:
    """The N × seed grid over the default classifier (on ``data``, default Rotten Tomatoes)."""
    base: dict[str, Any] = {
        "name": "calibset-sweep",
        "model": {"default": True},
        "data": dict(data or {}),
        "calibration": {"compare": [], **(calibration or {})},
        "evaluate": {"iterations": 5, "shapes": [[1, 128]]},
        "gate": {"enabled": False},
        "build": [
            {"backend": "onnxruntime", "precision": "fp32"},
            {"backend": "onnxruntime", "precision": "int8-static"},
        ],
    }
    if n_test is not None:
        base["evaluate"]["n_test"] = n_test
    axes = {"calibration.n": sorted(set(ns)), "calibration.seed": sorted(set(seeds))}
    return parse_sweep(
        {"name": "calibset-sweep", "experiment": base, "axes": axes},
        base_dir=Path.cwd(),
        source="workbench calibset sweep",
    )


def amax_spread(tables: Sequence[dict[str, float]]) -> np.ndarray:
    """Per tensor common to all tables: (max - min) / mean of its amax across the tables."""
    if len(tables) < 2:
        return np.zeros(0)
    common = sorted(set.intersection(*(set(t) for t in tables)))
    values = np.array([[t[name] for t in tables] for name in common], dtype=np.float64)
    if values.size == 0:
        return np.zeros(0)
    mean = values.mean(axis=1)
    return np.where(
        mean > 0, (values.max(axis=1) - values.min(axis=1)) / np.maximum(mean, 1e-30), 0
    )


def summarize(result: SweepResult, out_dir: Path) -> str:
    """Per N: INT8 accuracy (min/mean/max over seeds), agreement, median amax spread."""
    lines = [
        f"{'N':>6} {'seeds':>5} {'INT8 acc min/mean/max':>24} {'agree':>7} {'amax spread':>11}"
    ]
    by_n: dict[str, list[Any]] = {}
    for cell in result.cells:
        if cell.status == "done":
            by_n.setdefault(cell.params["calibration.n"], []).append(cell)
    for n in sorted(by_n, key=int):
        cells = by_n[n]
        builds = [b for c in cells for b in c.builds if b.name == INT8_BUILD]
        acc = np.array([b.accuracy for b in builds])
        tables = [_table(out_dir / c.run_dir) for c in cells]
        spread = amax_spread([t for t in tables if t])
        med = f"{float(np.median(spread)):.3f}" if spread.size else "—"
        lines.append(
            f"{n:>6} {len(cells):>5} {acc.min():>8.4f}/{acc.mean():.4f}/{acc.max():.4f} "
            f"{np.mean([b.agreement for b in builds]):>7.4f} {med:>11}"
        )
    failed = [c for c in result.cells if c.status != "done"]
    lines += [f"failed: {c.name}: {c.error}" for c in failed]
    return "\n".join(lines)


def _table(run_dir: Path) -> dict[str, float]:
    path = run_dir / TABLE_FILE
    if not path.is_file():
        return {}
    return {k: float(v) for k, v in json.loads(path.read_text(encoding="utf-8"))["amax"].items()}


def default_model(data_file: str | None, text_column: str, label_column: str) -> tuple[str, Any]:
    """The demo's cached default classifier (prepared on first use), its ONNX and tokenizer,
    through the same Workspace a run uses."""
    from workbench.experiment.workspace import Workspace
    from workbench.results.spec import DataSpec, Experiment, ModelSpec

    data = DataSpec(file=data_file or "", text_column=text_column, label_column=label_column)
    ws = Workspace.from_experiment(Experiment(model=ModelSpec(default=True), data=data))
    return ws.export.onnx_path, ws.tokenizer
