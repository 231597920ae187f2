"""Options shared by `run` and `demo`, and how their outcome is printed."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.results.spec import Experiment

if TYPE_CHECKING:
    from workbench.results.records import RunResult


def add_run_args(p: argparse.ArgumentParser) -> None:
    """--quick, --reports, --calibration-sets, --run-id, --skip-unavailable, --no-gate, --policy,
    --no-progress, --keep-models, --wide."""
    p.add_argument("--quick", action="store_true", help="small subsets (CI, a first look)")
    p.add_argument("--reports", default="reports", help="where run directories go")
    p.add_argument(
        "--calibration-sets",
        default="calibration_sets",
        help="where calibration sets are saved and reused (default: calibration_sets)",
    )
    p.add_argument("--run-id", help="name of the run directory (default: timestamp)")
    p.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="list builds whose backend is missing here as 'not run' instead of exiting 3",
    )
    p.add_argument("--policy", help="gate policy TOML (overrides the experiment's)")
    p.add_argument("--no-gate", action="store_true", help="skip the gate")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: bars on a terminal, else a line per stage start, "
        "every minute while it runs, and at its end with the elapsed time)",
    )
    p.add_argument(
        "--keep-models",
        action="store_true",
        help="copy the models into the run folder (default: the run refers to them in the "
        "cache by path and sha256, and stays under 10 MB)",
    )
    p.add_argument("--wide", action="store_true", help="every summary column (wider than 100)")


def apply_run_args(exp: Experiment, args: argparse.Namespace) -> Experiment:
    """The experiment as the command line adjusts it."""
    if args.quick:
        exp = replace(exp, quick=True)
    if args.no_gate:
        exp = replace(exp, gate=replace(exp.gate, enabled=False))
    elif args.policy:
        from workbench.gate import load_policy

        policy = load_policy(args.policy)
        exp = replace(exp, gate=replace(exp.gate, policy=policy, policy_file=args.policy))
    return exp


def execute(exp: Experiment, args: argparse.Namespace, strict_gate: bool) -> int:
    """Run, print the summary, the gate's reasons and the report path; exit code per gate."""
    return run_and_print(exp, args, strict_gate)[0]


def run_and_print(
    exp: Experiment, args: argparse.Namespace, strict_gate: bool
) -> tuple[int, RunResult, Path]:
    """``execute``, also returning the run record and its directory (the demo goes on)."""
    from workbench.experiment.engine import RunOptions, run_experiment
    from workbench.experiment.rundir import check_run_id
    from workbench.results.summary import format_summary

    if args.run_id is not None:
        check_run_id(args.run_id)  # "" too: an empty --run-id is a mistake, not "default"

    opts = RunOptions(
        reports_root=args.reports,
        calibration_root=args.calibration_sets,
        run_id=args.run_id or "",
        skip_unavailable=args.skip_unavailable,
        progress=not args.no_progress,
        keep_models=args.keep_models,
    )
    run, run_dir = run_experiment(exp, opts)
    print(format_summary(run, wide=args.wide))
    for w in run.sanity_warnings:  # a degenerate model or tokenization: say so by the table
        print(f"warning: {w}")
    for s in run.skipped:
        print(f"not run: {s.name} ({s.reason})")
    print(f"\nreport: {Path(run_dir) / 'report.html'}")
    gate_file = Path(run_dir) / "gate.json"
    if not (run.experiment.gate.enabled and gate_file.is_file()):
        print("gate: not run (no [gate] or --no-gate)")
        return 0, run, Path(run_dir)
    from workbench.commands.gate import print_decision
    from workbench.results.gate import load_decision

    g = run.experiment.gate
    files = [gate_file] + [Path(run_dir) / f"gate-{c}" / "gate.json" for c in g.candidates[1:]]
    decisions = [load_decision(f) for f in files if f.is_file()]
    worst = max(decisions, key=lambda d: {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}[d.verdict])
    tail = ""
    if worst.verdict != "PASS" and not strict_gate:
        tail = "; the demo still exits 0: pass --policy FILE for an exit code that follows the gate"
    for d in decisions:
        print()
        print_decision(d, tail=tail if len(decisions) == 1 else "")
    if len(decisions) > 1:
        n = len(decisions)
        print(f"gate {worst.verdict} over {n} candidates (worst: {worst.candidate}){tail}")
    return (worst.exit_code if strict_gate else 0), run, Path(run_dir)
