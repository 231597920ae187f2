"""``workbench calibrate``'s work: the calibration stage alone, several methods side by side.

One statistics pass over the experiment's calibration set, a table per method, then either
the methods comparison on the test split or, per method, a table, a TensorRT calibration
cache and a Q/DQ model. The command parses and prints; everything else is here.

Example::

    opts = CalibrateOptions(methods=parse_methods("entropy,max"), compare=False)
    result = calibrate_methods(load_experiment("experiment.toml"), opts)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.experiment.calibrate import CalibrationOutcome
    from workbench.experiment.workspace import Workspace
    from workbench.results.calibration import CalibrationComparison
    from workbench.results.spec import Experiment

METHOD_ALIASES = {"percentile": ["percentile-99.9", "percentile-99.99", "percentile-99.999"]}


@dataclass(frozen=True)
class CalibrateOptions:
    """What ``workbench calibrate`` asks for, besides the experiment."""

    methods: tuple[str, ...]
    per_tensor: bool = False
    exclude: tuple[str, ...] = ()  # empty: the experiment's [calibration] exclude
    compare: bool = True
    quick: bool = False
    reports_root: str = "reports"
    calibration_root: str = "calibration_sets"
    run_id: str = ""  # default: <UTC timestamp>-calibrate
    trt_version: str = "10.16.1"

    def __post_init__(self) -> None:
        from workbench.calibration.trt_cache import trt_version_code

        trt_version_code(self.trt_version)  # checked now, not after calibrating (written last)


@dataclass(frozen=True)
class MethodArtifacts:
    """One method's files (written without the comparison)."""

    method: str
    base: str  # <run>/calibration/<method>: .json, .calib and .qdq.onnx beside it


@dataclass(frozen=True)
class CalibrateResult:
    """The run folder, the calibration outcome, and the comparison or the artifacts."""

    run_dir: Path
    outcome: CalibrationOutcome
    comparison: CalibrationComparison | None
    artifacts: list[MethodArtifacts]
    comparison_file: Path | None


def parse_methods(text: str) -> list[str]:
    """``"entropy,percentile,max"`` -> the method names (``percentile`` = its three variants)."""
    from workbench.calibration.table import check_methods

    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        for m in METHOD_ALIASES.get(part, [part] if part else []):
            if m not in out:
                out.append(m)
    check_methods(out)
    return out


def calibrate_methods(exp: Experiment, opts: CalibrateOptions) -> CalibrateResult:
    """Every check before any work, then the calibration stage into ``reports/<run-id>/``."""
    from workbench.experiment.rundir import claim_run_dir, preflight
    from workbench.experiment.workspace import Workspace

    cal = replace(
        exp.calibration,
        method=opts.methods[0],
        compare=tuple(opts.methods),
        per_channel=not opts.per_tensor,
        exclude=opts.exclude or exp.calibration.exclude,
    )
    exp = replace(exp, calibration=cal)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = opts.run_id or f"{stamp}-calibrate"
    preflight(exp, opts.reports_root, opts.calibration_root, run_id)  # paths, before any work
    ws = Workspace.from_experiment(exp, quick=opts.quick)
    claim = claim_run_dir(opts.reports_root, run_id)
    run_dir = claim.path
    try:
        out = ws.calibrate(run_dir, opts.calibration_root, compare=opts.compare)
        if not opts.compare:  # still under the lock: these files go into the run folder too
            arts = _artifacts(ws, out.table_file, opts, run_dir)
            return CalibrateResult(run_dir, out, None, arts, None)
    finally:
        claim.release()
    from workbench.results.calibration import COMPARISON_FILE, CalibrationComparison
    from workbench.results.records import load_record

    path = run_dir / COMPARISON_FILE
    return CalibrateResult(run_dir, out, load_record(CalibrationComparison, path), [], path)


def _artifacts(
    ws: Workspace, table_file: str, opts: CalibrateOptions, run_dir: Path
) -> list[MethodArtifacts]:
    """Each method's table, TensorRT cache and Q/DQ model (tables come from the cache)."""
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import CalibrationTable
    from workbench.calibration.trt_cache import write_trt_cache

    c = ws.exp.calibration
    out = []
    for method in opts.methods:
        table = CalibrationTable.load(Path(table_file).with_name(f"{method}.json"))
        base = run_dir / "calibration" / method
        table.save(f"{base}.json")
        write_trt_cache(table, f"{base}.calib", trt_version=opts.trt_version)
        write_qdq_model(ws.export.onnx_path, table, f"{base}.qdq.onnx", c.per_channel, c.exclude)
        out.append(MethodArtifacts(method, str(base)))
    return out
