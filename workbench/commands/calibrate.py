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


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.calibrate_methods import (
        CalibrateOptions,
        calibrate_methods,
        parse_methods,
    )
    from workbench.experiment.spec import load_experiment, shipped_experiment

    methods = parse_methods(args.methods)
    opts = CalibrateOptions(
        methods=tuple(methods),
        per_tensor=args.per_tensor,
        exclude=tuple(args.exclude),
        compare=not args.no_compare,
        quick=args.quick,
        reports_root=args.reports,
        calibration_root=args.calibration_sets,
        run_id=args.run_id or "",
        trt_version=args.trt_version,
    )
    exp = load_experiment(args.experiment or shipped_experiment(args.shipped))
    result = calibrate_methods(exp, opts)
    for a in result.artifacts:
        print(f"{a.method}: {a.base}.json, {a.base}.calib, {a.base}.qdq.onnx")
    rec = result.comparison
    if rec is None:
        return 0
    print(f"calibration set {result.outcome.calib_set.dir} ({rec.n_calibration_samples} "
          f"samples), test n={rec.n_test}, FP32 accuracy {rec.fp32_accuracy:.4f}")  # fmt: skip
    print(f"{'method':<20}{'accuracy':>10}{'agree':>8}{'SQNR dB':>9}{'clipped':>9}")
    for m in rec.methods:
        print(
            f"{m.method:<20}{m.accuracy:>10.4f}{m.agreement:>8.4f}{m.sqnr_db_mean:>9.1f}"
            f"{m.clipped_fraction_mean:>9.2e}"
        )
    print(f"best: {rec.best_method}\nwritten: {result.comparison_file}")
    return 0
