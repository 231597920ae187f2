"""Saving a benchmark's JSON: the machine's load before and after, and no quiet result lost.

A number measured on a busy machine is not comparable with one measured on a quiet one. Every
benchmark records the 1/5/15-minute load average when it started and when it finished, and
``save_result`` refuses to overwrite a committed result measured on a quiet machine (1-minute
load below ``QUIET_LOAD`` when it started) with one from a loaded machine, unless asked
(``--force-overwrite``). The "after" load includes the benchmark's own work, so "quiet" is
judged on the load *before* it started.

Example::

    before = load_average()
    ...  # measure
    save_result(args.out, result, before, force=args.force_overwrite)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from workbench.fileio import atomic_write_json

QUIET_LOAD = 1.5  # 1-minute load average below this when the benchmark started: quiet
LOAD_KEY = "load_average"


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (rounded)."""
    return [round(x, 2) for x in os.getloadavg()]


def add_overwrite_flag(ap: argparse.ArgumentParser) -> None:
    """``--force-overwrite``: replace a quiet machine's result with a loaded machine's."""
    ap.add_argument(
        "--force-overwrite",
        action="store_true",
        help=f"overwrite a result measured on a quiet machine (load < {QUIET_LOAD}) even "
        "though this machine is loaded",
    )


def load_before(result: dict[str, Any]) -> float | None:
    """The 1-minute load when ``result`` was measured; None for a result that never said."""
    rec = result.get(LOAD_KEY)
    if isinstance(rec, dict) and rec.get("before"):
        return float(rec["before"][0])
    legacy = result.get("load_average_1_5_15")  # older results: one reading, after the run
    return float(legacy[0]) if legacy else None


def is_quiet(result: dict[str, Any]) -> bool:
    """Whether ``result`` was measured on a quiet machine (False when it does not say)."""
    load = load_before(result)
    return load is not None and load < QUIET_LOAD


def save_result(
    path: str | Path, result: dict[str, Any], before: list[float], *, force: bool = False
) -> Path:
    """Write ``result`` with its load average (``before`` the run, and now) to ``path``.

    Exits (SystemExit, a one-line message) instead of replacing a quiet machine's result with
    a loaded machine's, unless ``force``.
    """
    path = Path(path)
    new = {**result, LOAD_KEY: {"before": list(before), "after": load_average()}}
    new.pop("load_average_1_5_15", None)
    if path.is_file() and not force and not is_quiet(new):
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict) and is_quiet(old):
            raise SystemExit(
                f"{path} holds a result measured on a quiet machine (load "
                f"{load_before(old):.2f}); this run started at load {before[0]:.2f} "
                f"(quiet is < {QUIET_LOAD}). Not overwritten: rerun on a quiet machine, write "
                "elsewhere with --out, or pass --force-overwrite."
            )
    atomic_write_json(path, new)
    return path
