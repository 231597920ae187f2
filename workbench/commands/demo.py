"""``workbench demo``: the whole loop on the shipped defaults (or your data)."""

from __future__ import annotations

import argparse

from workbench.commands._args import add_data_args, add_finetune_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="calibrate -> quantize -> evaluate -> report on the shipped default (CPU)",
        description="Run the whole loop and write reports/<run-id>/report.html.",
    )
    p.add_argument("--quick", action="store_true", help="small subsets (CI, a first look)")
    add_data_args(p)
    add_finetune_arg(p)
    p.add_argument("--calib-n", type=int, help="calibration set size (default 512, quick 64)")
    p.add_argument(
        "--calibrator",
        choices=["workbench", "ort"],
        help="who computes INT8 ranges (default: workbench)",
    )
    p.add_argument("--method", default="entropy", help="calibration method (default entropy)")
    p.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor (default per-channel)",
    )
    p.add_argument("--n-test", type=int, help="evaluate on at most this many test samples")
    p.add_argument("--iterations", type=int, help="timed iterations per latency shape")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    p.add_argument("--reports", default="reports", help="where run directories go")
    p.add_argument("--calibration-sets", default="calibration_sets")
    p.add_argument("--run-id", help="name of the run directory (default: timestamp)")
    p.add_argument(
        "--policy",
        help="gate policy TOML (default: the shipped demo policy); "
        "with an explicit policy a failed gate exits 1",
    )
    p.add_argument("--no-gate", action="store_true", help="skip the gate")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.pipeline import DemoConfig, quick_config, run_demo
    from workbench.results.summary import format_summary

    overrides = {
        "data_file": args.data,
        "text_column": args.text_column,
        "label_column": args.label_column,
        "finetune": args.finetune,
        "calib_method": args.method,
        "per_channel": not args.per_tensor,
        "threads": args.threads,
        "reports_root": args.reports,
        "calibration_root": args.calibration_sets,
        "run_id": args.run_id,
        "progress": not args.no_progress,
    }
    for key, value in (
        ("calib_n", args.calib_n),
        ("calibrator", args.calibrator),
        ("n_test", args.n_test),
        ("latency_iterations", args.iterations),
    ):
        if value is not None:
            overrides[key] = value
    if args.no_gate:
        overrides["gate_policy"] = None
    elif args.policy:
        overrides["gate_policy"] = args.policy
    config = quick_config(**overrides) if args.quick else DemoConfig(**overrides)
    run_, run_dir = run_demo(config)
    print(format_summary(run_))
    if config.gate_policy:
        from workbench.gate import load_decision

        decision = load_decision(run_dir / "gate.json")
        print()
        for check in decision.checks:
            print(check.message)
        print(f"gate {'PASS' if decision.passed else 'FAIL'} (policy {config.gate_policy})")
        if args.policy and not decision.passed:
            from workbench.errors import GateFailedError

            raise GateFailedError(f"gate failed; see {run_dir / 'gate.md'}")
    print(f"\nreport: {run_dir / 'report.html'}")
    return 0
