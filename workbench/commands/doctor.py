"""``workbench doctor``: which backends are usable on this machine, and why not.

The first thing to run on a new GPU box. Each probe imports its library lazily and never
raises: a missing package, driver or device is a row saying so. Example::

    workbench doctor          # table
    workbench doctor --json   # machine-readable
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.experiment.doctor import DoctorReport


def format_table(report: DoctorReport) -> str:
    """The report as an aligned plain-text table plus a backend summary."""
    rows = [("component", "ok", "version", "detail")]
    rows += [
        (c.component, "yes" if c.ok else "no", c.version or "-", c.detail) for c in report.checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    usable = [b for b, ok in report.backends.items() if ok]
    lines += ["", "usable backends: " + (", ".join(usable) or "none")]
    if not report.backends.get("tensorrt"):
        lines.append("tensorrt unusable: needs the tensorrt wheel, polygraphy and a GPU")
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor", help="show which backends (TensorRT, CUDA, ORT, torch) work here"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.doctor import collect

    report = collect()
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(format_table(report))
    return 0
