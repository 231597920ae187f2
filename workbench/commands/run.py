"""``workbench run EXPERIMENT.toml``: validate your model on your data, builds of your choice."""

from __future__ import annotations

import argparse

from workbench.commands._run_args import add_run_args, apply_run_args, execute


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run an experiment file: builds -> accuracy, latency -> report, gate",
        description=(
            "Run EXPERIMENT.toml (write one with `workbench init`). Exit codes: 0 gate passed "
            "(or no gate), 1 gate failed, 2 bad input, 3 a build's backend is missing here, "
            "4 gate inconclusive (the data cannot tell; the last line says what would settle "
            "it), 70 internal error (a bug; the traceback is in the file named)."
        ),
    )
    p.add_argument("experiment", nargs="?", help="experiment TOML file")
    p.add_argument("--shipped", help="run a shipped experiment instead: demo, gpu")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.errors import ConfigError
    from workbench.experiment.spec import load_experiment, shipped_experiment

    if bool(args.experiment) == bool(args.shipped):
        raise ConfigError("give one experiment: a TOML file or --shipped NAME")
    path = args.experiment or shipped_experiment(args.shipped)
    exp = apply_run_args(load_experiment(path), args)
    return execute(exp, args, strict_gate=True)
