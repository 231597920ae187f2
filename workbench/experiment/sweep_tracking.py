"""Optional MLflow tracking of a sweep: one MLflow run per cell (params, metrics, report).

Runs are tagged with the cell's content key and status, so logging again after a resumed
sweep adds only the cells not logged yet. A plain folder (or ``file:`` URI) is MLflow's
file store; MLflow 3 keeps it in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``,
which is set for that case only.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from workbench.errors import BackendUnavailableError
from workbench.results.sweep import DONE, CellResult, SweepResult

KEY_TAG, STATUS_TAG, SWEEP_TAG = "workbench.cell_key", "workbench.status", "workbench.sweep"
_METRICS = ("accuracy", "drop", "drop_low", "drop_high", "agreement", "p50_ms")


def check_mlflow() -> None:
    """Raise before any work when ``--mlflow`` is asked for and MLflow is not installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            "--mlflow needs MLflow: pip install 'workbench[tracking]' (or leave --mlflow out)"
        ) from exc


def tracking_uri(uri: str) -> str:
    """A folder becomes a ``file:`` URI (MLflow's file store); other URIs pass through."""
    if "://" in uri or uri.startswith("file:"):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def log_sweep(sweep: SweepResult, out_dir: Path, uri: str) -> int:
    """Log every cell not logged before as one MLflow run; returns how many were logged.

    Example::

        log_sweep(load_sweep_result("reports/sweeps/grid"), Path("reports/sweeps/grid"), "mlruns")
    """
    check_mlflow()
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(sweep.name)
    exp_id = found.experiment_id if found else client.create_experiment(sweep.name)
    runs = client.search_runs([exp_id], max_results=50000)
    logged = {(r.data.tags.get(KEY_TAG), r.data.tags.get(STATUS_TAG)) for r in runs}
    n = 0
    for cell in sweep.cells:
        if (cell.key, cell.status) not in logged:
            _log_cell(client, exp_id, sweep.name, cell, out_dir)
            n += 1
    return n


def _log_cell(client: Any, exp_id: str, sweep: str, c: CellResult, out_dir: Path) -> None:
    from mlflow.entities import Metric, Param

    tags = {KEY_TAG: c.key, STATUS_TAG: c.status, SWEEP_TAG: sweep}
    run_id = client.create_run(exp_id, run_name=c.name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in c.params.items()]
    if c.error:
        params.append(Param("error", c.error[:500]))
    metrics = [Metric("wall_s", c.wall_s, now, 0), Metric("attempts", float(c.attempts), now, 0)]
    for b in c.builds:
        for m in _METRICS:
            value = getattr(b, m)
            if value is not None and math.isfinite(value):
                metrics.append(Metric(f"{b.name}.{m}", float(value), now, 0))
    client.log_batch(run_id, metrics=metrics, params=params)
    if c.report and (out_dir / c.report).is_file():
        client.log_artifact(run_id, str(out_dir / c.report))
    client.set_terminated(run_id, "FINISHED" if c.status == DONE else "FAILED")
