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


def run(args: argparse.Namespace) -> int:
    from workbench.report.render import render_report

    path = render_report(args.run, compare=args.compare, out=args.out)
    print(f"report: {path}")
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0
