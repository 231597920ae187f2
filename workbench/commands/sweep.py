"""``workbench sweep SWEEP.toml``: a grid of experiments as Ray tasks, one comparison out."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep file's cells (experiments) on Ray; sweep.json + sweep.html",
        description=(
            "Expand SWEEP.toml (a base experiment plus [axes]) into cells and run them as Ray "
            "tasks: on this machine by default, or on a cluster with --address. Finished cells "
            "are reused, so a killed sweep resumes. Exit codes: 0 every cell finished (and every "
            "cell's gate passed), 1 a cell failed or a cell's gate FAILED, 2 bad input, 3 Ray or "
            "a needed GPU is missing, 4 a cell's gate was INCONCLUSIVE (and none failed)."
        ),
    )
    p.add_argument("sweep", help="sweep TOML file")
    p.add_argument("--out", help="sweep folder (default: reports/sweeps/<sweep name>)")
    p.add_argument("--address", default="", help="join a Ray cluster: auto | ray://host:port")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    p.add_argument("--num-gpus", type=int, help="GPUs of the local Ray (default: detected)")
    p.add_argument("--retries", type=int, default=0, help="extra attempts for a failed cell")
    p.add_argument(
        "--mlflow",
        default="",
        metavar="URI",
        help="log each cell to MLflow: a folder (file store) or a tracking URI",
    )
    p.add_argument("--list", action="store_true", help="print the cells and exit")
    p.add_argument("--no-report", action="store_true", help="skip sweep.html")
    p.set_defaults(func=run)


def default_sweep_dir(name: str) -> str:
    """``reports/sweeps/<name>``, refused if a symlink there leads out of ``reports/``."""
    from workbench.experiment.rundir import inside
    from workbench.fileio import check_name

    folder = Path("reports") / "sweeps" / check_name(name, "sweep name")
    inside("reports", folder, "sweep folder")
    return str(folder)


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.sweep import load_sweep
    from workbench.experiment.sweep_run import SweepOptions, run_sweep

    spec = load_sweep(args.sweep)
    if args.list:
        for cell in spec.cells:
            print(f"{cell.key}  {cell.name}")
        return 0
    out = args.out or default_sweep_dir(spec.name)
    opts = SweepOptions(
        out_dir=out,
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        retries=args.retries,
        report=not args.no_report,
        verbose=args.verbose,
        mlflow=args.mlflow,
    )
    result, out_dir = run_sweep(spec, opts)
    for c in result.cells:
        state = "reused" if c.key in result.reused else c.status
        gate = f"  gate {c.gate_verdict}" if c.gate_verdict else ""
        print(f"{state:<7} {c.key}  {c.name}{gate}" + (f"  ({c.error})" if c.error else ""))
    print(f"\nsweep: {out_dir / 'sweep.json'}")
    if (out_dir / "sweep.html").is_file():
        print(f"report: {out_dir / 'sweep.html'}")
    verdicts = {c.gate_verdict for c in result.cells}
    if result.failed or "FAIL" in verdicts:
        return 1
    return 4 if "INCONCLUSIVE" in verdicts else 0
