"""``workbench report``: render a run's self-contained HTML report.

Example::

    workbench report reports/20250101-120000-rotten_tomatoes --compare reports/last-release --open
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="render reports/<run>/report.html from the run's records",
        description=(
            "Render one self-contained HTML file (no network, no scripts) from a run's "
            "run.json and prediction files; opens with the gate verdict when gate.json exists."
        ),
    )
    p.add_argument("run", type=Path, help="run directory (reports/<run-id>)")
    p.add_argument("--compare", type=Path, default=None, help="a second run to compare against")
    p.add_argument("--out", type=Path, default=None, help="output file (default: RUN/report.html)")
    p.add_argument("--open", action="store_true", help="open the report in a browser")
    p.set_defaults(func=run)


def check_run_path(path: Path, flag: str) -> None:
    """A run directory (or its run.json): ResultsError naming the fix otherwise."""
    from workbench.errors import ResultsError

    if path.is_file() and path.name == "run.json":
        return
    if not path.is_dir() or not (path / "run.json").is_file():
        what = (
            "does not exist"
            if not path.exists()
            else "is a file, not a run directory"
            if path.is_file()
            else "is a folder without run.json, not a run directory"
        )
        raise ResultsError(
            f"{flag} {path} {what}; pass a folder written by `workbench run` or "
            "`workbench demo` (reports/<run-id>)"
        )


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.rundir import check_not_busy
    from workbench.fileio import check_writable_file
    from workbench.report.render import render_report

    check_run_path(args.run, "run")
    check_not_busy(args.run)
    if args.compare is not None:
        check_run_path(args.compare, "--compare")
        check_not_busy(args.compare)
    if args.out is not None:
        fix = "give --out a file path in a writable folder, e.g. out/report.html"
        check_writable_file(args.out, "--out", fix)
    path = render_report(args.run, compare=args.compare, out=args.out)
    print(f"report: {path}")
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            print(f"no browser found here; open {path.resolve().as_uri()} yourself")
    return 0
