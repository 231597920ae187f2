"""``workbench demo``: the shipped experiment (default classifier, Rotten Tomatoes) end to end."""

from __future__ import annotations

import argparse

from workbench.commands._run_args import add_run_args, apply_run_args, execute


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the shipped experiment: calibrate -> quantize -> evaluate -> report (CPU)",
        description=(
            "Runs workbench/experiment/shipped/demo.toml and writes reports/<run-id>/report.html. "
            "Exits 0 whatever the shipped gate says; with --policy the exit code follows the "
            "gate (1 = failed, 4 = inconclusive)."
        ),
    )
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.spec import load_experiment, shipped_experiment

    exp = apply_run_args(load_experiment(shipped_experiment("demo")), args)
    return execute(exp, args, strict_gate=bool(args.policy))
