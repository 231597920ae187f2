"""Run a sweep's cells as Ray tasks: locally by default, or on a Ray cluster (``address``).

Scheduling, in Ray's own terms:

* every cell task asks for ``num_cpus = cpus_per_cell``; a cell with a CUDA build also asks
  for ``num_gpus = 1``, so Ray gives it a GPU of its own (``CUDA_VISIBLE_DEVICES``) and runs
  one cell per GPU;
* a cell that measures CPU latency also asks for one unit of the custom resource ``timing``,
  of which each node has exactly one: timed CPU cells on a node run one at a time, never
  beside another timed cell (GPU timing is private to the cell's own GPU);
* before the cells, one *prepare* task per distinct (model, data, seed, calibration set)
  trains/exports the model and collects calibration statistics into the content-addressed
  cache (``workbench.fileio.cache_root()``), so the cells that share them reuse them.

A cell whose ``cell.json`` says it finished is not run again; a failed cell is recorded with
its error (and retried ``retries`` times) and never stops the others.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.errors import BackendUnavailableError, ConfigError, ResultsError, note_output_dir
from workbench.experiment.sweep import SweepCell, SweepSpec
from workbench.fileio import sha256_json
from workbench.results.records import RUN_FILE, SCHEMA_VERSION
from workbench.results.serde import to_dict
from workbench.results.sweep import (
    CELLS_DIR,
    DONE,
    FAILED,
    CellPlacement,
    CellResult,
    SweepResult,
    load_cell,
    save_cell,
    save_sweep,
)

log = logging.getLogger(__name__)

TIMING = "timing"  # custom Ray resource: one per node, held by a cell that times on the CPU
CALIBRATION_SETS = "calibration_sets"
_FORWARD_ENV = ("WORKBENCH_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep writes and which Ray it runs on (not part of what it measures)."""

    out_dir: str  # the sweep's folder: sweep.json, sweep.html, cells/<key>/
    address: str = ""  # "" starts Ray on this machine; "auto" or "ray://host:port" joins one
    num_cpus: int | None = None  # local Ray only (default: this machine's cores)
    num_gpus: int | None = None  # local Ray only (default: detected)
    retries: int = 0  # extra attempts for a failed cell
    report: bool = True  # render sweep.html
    verbose: bool = False  # forward the cells' own log lines
    mlflow: str = ""  # MLflow tracking URI or folder: one MLflow run per cell ("" = none)


def run_sweep(spec: SweepSpec, options: SweepOptions) -> tuple[SweepResult, Path]:
    """Run every cell not finished yet; returns the sweep record and the sweep folder.

    Example::

        result, out = run_sweep(load_sweep("sweep.toml"), SweepOptions("reports/sweeps/grid"))
    """
    check_sweep_options(options)
    if options.mlflow:
        from workbench.experiment.sweep_tracking import check_mlflow

        check_mlflow()
    out = Path(options.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    note_output_dir(out)  # an internal error's traceback goes here
    t0 = time.perf_counter()
    finished = {c.key: r for c in spec.cells if (r := finished_cell(out, c)) is not None}
    todo = [c for c in spec.cells if c.key not in finished]
    log.info("sweep %s: %d cells, %d finished before, %d to run", spec.name,
             len(spec.cells), len(finished), len(todo))  # fmt: skip
    cluster, cpus, gpus, new = "local", 0.0, 0.0, {}
    if todo:
        ray = _import_ray()
        ours = not ray.is_initialized()  # a notebook's own ray.init() is used and kept
        if ours:
            _connect(ray, options)
        try:
            res = ray.cluster_resources()
            cluster = options.address or ("local" if ours else "already connected")
            cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
            _check_resources(res, todo, options.address or cluster)
            new = _execute(ray, spec, todo, out, options.retries)
        finally:
            if ours:
                ray.shutdown()
    from workbench.provenance import collect_provenance

    result = SweepResult(
        schema_version=SCHEMA_VERSION,
        name=spec.name,
        source=spec.source,
        axes={k: list(v) for k, v in spec.axes},
        cells=[finished.get(c.key) or new[c.key] for c in spec.cells],
        reused=list(finished),
        cluster=cluster,
        num_cpus=cpus,
        num_gpus=gpus,
        wall_s=time.perf_counter() - t0,
        provenance=collect_provenance(),
    )
    save_sweep(result, out)
    if options.report:
        from workbench.report.sweep import render_sweep

        render_sweep(out)
    if options.mlflow:
        from workbench.experiment.sweep_tracking import log_sweep

        n = log_sweep(result, out, options.mlflow)
        log.info("logged %d cells to MLflow at %s", n, options.mlflow)
    return result, out


def check_sweep_options(options: SweepOptions) -> None:
    """Every option check, before the sweep folder is created (ConfigError, exit 2)."""
    from workbench.fileio import check_path_arg

    check_path_arg(options.out_dir, "sweep folder")
    if options.retries < 0:
        raise ConfigError(f"--retries {options.retries}: use 0 or more")
    if options.num_cpus is not None and options.num_cpus < 1:
        raise ConfigError(f"--num-cpus {options.num_cpus}: use 1 or more (or leave it out)")
    if options.num_gpus is not None and options.num_gpus < 0:
        raise ConfigError(f"--num-gpus {options.num_gpus}: use 0 or more (or leave it out)")
    if Path(options.out_dir).is_file():
        raise ConfigError(f"sweep folder {options.out_dir} is a file; pass --out a folder")


def finished_cell(out: Path, cell: SweepCell) -> CellResult | None:
    """The cell's record when an earlier invocation finished it (run.json and cell.json)."""
    cell_dir = out / CELLS_DIR / cell.key
    if not (cell_dir / RUN_FILE).is_file():
        return None
    try:
        record = load_cell(cell_dir)
    except ResultsError:
        return None
    return record if record.status == DONE and record.key == cell.key else None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError(
            "sweeps run on Ray, which is not installed: pip install 'workbench[sweep]'"
        ) from exc
    return ray


def _connect(ray: Any, opts: SweepOptions) -> None:
    env = {k: os.environ[k] for k in _FORWARD_ENV if k in os.environ}
    if opts.address:
        if opts.num_cpus or opts.num_gpus:
            raise ConfigError("--num-cpus/--num-gpus size a local Ray; a cluster has its own")
        ray.init(address=opts.address, runtime_env={"env_vars": env},
                 log_to_driver=opts.verbose)  # fmt: skip
        return
    # A new local Ray turns token authentication on (making a token when there is none) and
    # logs a notice saying so on every start: keep Ray's secure default, drop the notice.
    # (RAY_AUTH_MODE=token without a token file stops Ray's GCS from starting at all.)
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        _start_local(ray, opts, env)
    finally:
        notice.setLevel(level)


def _start_local(ray: Any, opts: SweepOptions, env: dict[str, str]) -> None:
    ray.init(
        num_cpus=opts.num_cpus or os.cpu_count() or 1,
        num_gpus=opts.num_gpus,
        resources={TIMING: 1},
        include_dashboard=False,
        log_to_driver=opts.verbose,
        runtime_env={"env_vars": env} if env else None,
        # Ray starts workers at nice 15 by default; timed cells must not run deprioritised
        _system_config={"worker_niceness": 0},
    )


def _check_resources(res: dict[str, float], todo: list[SweepCell], address: str) -> None:
    """Refuse a sweep whose cells could never be placed (Ray would wait for ever)."""
    if any(c.times_cpu for c in todo) and res.get(TIMING, 0) < 1:
        raise ConfigError(
            f"the Ray cluster at {address} has no '{TIMING}' resource for timed CPU cells; "
            f"start each node with: ray start ... --resources='{{\"{TIMING}\": 1}}'"
        )
    if any(c.needs_gpu for c in todo) and res.get("GPU", 0) < 1:
        raise BackendUnavailableError(
            "the sweep has CUDA builds but Ray sees no GPU here; run it on a GPU machine or "
            "cluster (--address), or drop the cuda builds"
        )


def _task_resources(cell: SweepCell, cpus: float) -> dict[str, Any]:
    return {
        "num_cpus": cpus,
        "num_gpus": 1 if cell.needs_gpu else 0,
        "resources": {TIMING: 1} if cell.times_cpu else {},
    }


def _execute(
    ray: Any, spec: SweepSpec, todo: list[SweepCell], out: Path, retries: int
) -> dict[str, CellResult]:
    """Submit the prepare tasks and the cells; collect each cell as it ends."""
    cell_task = ray.remote(_cell_task)
    prepared = _submit_prepare(ray, spec, todo, out)
    pending: dict[Any, tuple[SweepCell, int]] = {}

    def submit(cell: SweepCell, attempt: int, dep: Any) -> None:
        res = _task_resources(cell, spec.cpus_per_cell)
        ref = cell_task.options(**res, max_retries=0, name=f"cell-{cell.key}").remote(
            cell, str(out), attempt, res, dep
        )
        pending[ref] = (cell, attempt)

    for c in todo:
        submit(c, 1, prepared[prepare_key(c)])
    results: dict[str, CellResult] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        cell, attempt = pending.pop(ready[0])
        try:
            results[cell.key] = ray.get(ready[0])
            log.info("cell %d/%d done: %s (%.1f s)", len(results), len(todo), cell.name,
                     results[cell.key].wall_s)  # fmt: skip
        except ray.exceptions.RayError as exc:
            error = _one_line(exc)
            if attempt <= retries:
                log.warning("cell %s failed (attempt %d): %s; retrying", cell.name, attempt, error)
                submit(cell, attempt + 1, None)
                continue
            log.warning("cell %s failed: %s", cell.name, error)
            results[cell.key] = _failed(cell, out, attempt, error)
    return results


def prepare_key(cell: SweepCell) -> str:
    """Cells with equal keys share the model, its ONNX export and the calibration statistics."""
    e = cell.experiment
    calib = {k: v for k, v in to_dict(e.calibration).items() if k != "method"}
    return sha256_json({"m": to_dict(e.model), "d": to_dict(e.data), "s": e.seed, "q": e.quick,
                        "c": calib, "gpu": cell.needs_gpu})[:16]  # fmt: skip


def _submit_prepare(ray: Any, spec: SweepSpec, todo: list[SweepCell], out: Path) -> dict[str, Any]:
    task = ray.remote(_prepare_task)
    refs: dict[str, Any] = {}
    for c in todo:
        key = prepare_key(c)
        if key not in refs:
            gpus = 1 if c.needs_gpu else 0  # the default classifier fine-tunes where a GPU is
            opts = {"num_cpus": spec.cpus_per_cell, "num_gpus": gpus, "max_retries": 0}
            refs[key] = task.options(**opts, name=f"prepare-{key}").remote(c, str(out), key)
    return refs


def _prepare_task(cell: SweepCell, out: str, key: str) -> str:
    """Ray task: the stages every cell of a group shares, computed once into the cache."""
    from workbench.experiment.workspace import Workspace
    from workbench.results.precision import precision

    where = cell.experiment.source.split(" cell [")[0]
    source = f"{where} (stages shared by cells, group {key})"
    ws = Workspace.from_experiment(replace(cell.experiment, source=source))
    exp = ws.exp
    _ = ws.export  # trains the default classifier if needed, exports ONNX (both cached)
    calibrated = [b for b in exp.builds if precision(b.precision).calibrated]
    if calibrated or not exp.builds or exp.calibration.compare:
        scratch = Path(out) / "prepare" / key
        scratch.mkdir(parents=True, exist_ok=True)
        root = str(Path(out) / CALIBRATION_SETS)
        ws.calibrate(scratch, root, compare=False)
    return key


def _cell_task(
    cell: SweepCell, out: str, attempt: int, resources: dict[str, Any], _prepared: Any
) -> CellResult:
    """Ray task: one cell through the ordinary engine, then its summary record."""
    import ray

    from workbench.experiment.engine import RunOptions, run_experiment
    from workbench.experiment.sweep import summarize_cell

    t0 = time.perf_counter()
    out_dir = Path(out)
    opts = RunOptions(
        reports_root=str(out_dir / CELLS_DIR),
        calibration_root=str(out_dir / CALIBRATION_SETS),
        run_id=cell.key,
        progress=False,
    )
    run, run_dir = run_experiment(cell.experiment, opts)
    placement = CellPlacement(
        node=socket.gethostname(),
        node_id=ray.get_runtime_context().get_node_id(),
        gpu_ids=[str(g) for g in ray.get_gpu_ids()],
        num_cpus=float(resources["num_cpus"]),
        num_gpus=float(resources["num_gpus"]),
        timing=TIMING in resources["resources"],
    )
    record = summarize_cell(cell, run, run_dir, out_dir)
    record = replace(record, attempts=attempt, wall_s=time.perf_counter() - t0,
                     placement=placement)  # fmt: skip
    save_cell(record, run_dir)
    return record


def _failed(cell: SweepCell, out: Path, attempts: int, error: str) -> CellResult:
    record = CellResult(
        schema_version=SCHEMA_VERSION,
        key=cell.key,
        name=cell.name,
        params=dict(cell.params),
        status=FAILED,
        error=error,
        attempts=attempts,
        wall_s=0.0,
        run_dir=f"{CELLS_DIR}/{cell.key}",
        report="",
        baseline="",
        reference="",
        builds=[],
        gate_passed=None,
        placement=None,
        finished_utc=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_cell(record, out / CELLS_DIR / cell.key)
    return record


def _one_line(exc: BaseException) -> str:
    """The original error of a Ray task as ``Type: message`` on one line."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]


__all__ = ["TIMING", "SweepOptions", "finished_cell", "prepare_key", "run_sweep"]
