"""``workbench calibrate EXPERIMENT.toml``: the calibration stage alone, methods side by side.

Examples::

    workbench calibrate experiment.toml --methods entropy,percentile,max,mse
    workbench calibrate --shipped demo --methods max --no-compare

One streamed statistics pass over the experiment's calibration set, then each method's
ranges as a table, a TensorRT calibration cache and a Q/DQ model; with the comparison
(default) each is evaluated on the test split. Writes into ``reports/<run-id>/``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

METHOD_ALIASES = {"percentile": ["percentile-99.9", "percentile-99.99", "percentile-99.999"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="INT8 ranges by several methods: tables, TensorRT caches, Q/DQ models, comparison",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    p.add_argument("experiment", nargs="?", help="experiment TOML (default: --shipped demo)")
    p.add_argument("--shipped", default="demo", help="shipped experiment when no file is given")
    p.add_argument(
        "--methods",
        default="entropy,percentile,max,mse",
        help="comma list: entropy, percentile (= 99.9,99.99,99.999), percentile-99.99, max, mse",
    )
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="keep float: an op type (Gemm) or a node-name regex; repeatable",
    )
    p.add_argument("--no-compare", action="store_true", help="only tables, caches, Q/DQ models")
    p.add_argument("--quick", action="store_true", help="small subsets")
    p.add_argument("--reports", default="reports", help="where run directories go")
    p.add_argument(
        "--calibration-sets",
        default="calibration_sets",
        help="where calibration sets are saved and reused (default: calibration_sets)",
    )
    p.add_argument("--run-id", help="output directory name (default: timestamp-calibrate)")
    p.add_argument("--trt-version", default="10.16.1", help="TensorRT version in cache headers")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    from workbench.calibration.trt_cache import trt_version_code
    from workbench.experiment.calibrate import prepare_calibration
    from workbench.experiment.progress import Stages
    from workbench.experiment.rundir import claim_run_dir, preflight
    from workbench.experiment.spec import load_experiment, shipped_experiment
    from workbench.experiment.workspace import Workspace, apply_quick

    methods = parse_methods(args.methods)
    trt_version_code(args.trt_version)  # checked now, not after calibrating (written last)
    exp = load_experiment(args.experiment or shipped_experiment(args.shipped))
    cal = replace(
        exp.calibration,
        method=methods[0],
        compare=tuple(methods),
        per_channel=not args.per_tensor,
        exclude=tuple(args.exclude) or exp.calibration.exclude,
    )
    exp = replace(exp, calibration=cal)
    exp = apply_quick(exp) if args.quick else exp
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = args.run_id or f"{stamp}-calibrate"
    preflight(exp, args.reports, args.calibration_sets, run_id)  # paths checked before any work
    ws = Workspace.open(exp)
    claim = claim_run_dir(args.reports, run_id)
    run_dir = claim.path
    try:
        out = prepare_calibration(
            ws, run_dir, args.calibration_sets, Stages(False), compare=not args.no_compare
        )
        if args.no_compare:  # still under the lock: these files go into the run folder too
            return _artifacts(ws, out.table_file, methods, run_dir, args)
    finally:
        claim.release()
    from workbench.results.calibration import COMPARISON_FILE, CalibrationComparison
    from workbench.results.records import load_record

    rec = load_record(CalibrationComparison, run_dir / COMPARISON_FILE)
    print(f"calibration set {out.calib_set.dir} ({rec.n_calibration_samples} samples), "
          f"test n={rec.n_test}, FP32 accuracy {rec.fp32_accuracy:.4f}")  # fmt: skip
    print(f"{'method':<20}{'accuracy':>10}{'agree':>8}{'SQNR dB':>9}{'clipped':>9}")
    for m in rec.methods:
        print(
            f"{m.method:<20}{m.accuracy:>10.4f}{m.agreement:>8.4f}{m.sqnr_db_mean:>9.1f}"
            f"{m.clipped_fraction_mean:>9.2e}"
        )
    print(f"best: {rec.best_method}\nwritten: {run_dir / COMPARISON_FILE}")
    return 0


def _artifacts(ws, table_file: str, methods: list[str], run_dir: Path, args) -> int:
    """Each method's table, TensorRT cache and Q/DQ model (tables come from the cache)."""
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import CalibrationTable
    from workbench.calibration.trt_cache import write_trt_cache

    c = ws.exp.calibration
    for method in methods:
        table = CalibrationTable.load(Path(table_file).with_name(f"{method}.json"))
        base = run_dir / "calibration" / method
        table.save(f"{base}.json")
        write_trt_cache(table, f"{base}.calib", trt_version=args.trt_version)
        write_qdq_model(ws.export.onnx_path, table, f"{base}.qdq.onnx", c.per_channel, c.exclude)
        print(f"{method}: {base}.json, {base}.calib, {base}.qdq.onnx")
    return 0
