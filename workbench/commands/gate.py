"""``workbench gate``: A/B-gate a candidate build against a baseline under a TOML policy.

Example::

    workbench gate --baseline reports/r1/ort-fp32 --candidate reports/r2/ort-int8-dynamic \\
        --policy gate.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.results.gate import GateDecision


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gate",
        help="judge a candidate build against a baseline (exit 0 pass, 1 fail, 4 inconclusive)",
        description=(
            "Compare two builds' result records under a TOML policy (see docs/gate.example.toml): "
            "paired bootstrap CI and exact McNemar on the accuracy difference, agreement, "
            "speed-up, p99 and memory limits. Writes gate.json, gate.md and gate-junit.xml. "
            "Exit codes: 0 pass, 1 fail, 2 bad input, 4 inconclusive (the data cannot tell; "
            "gate.md says what would settle it), 70 internal error."
        ),
    )
    p.add_argument(
        "--baseline",
        required=True,
        metavar="RUN/BUILD",
        help="baseline as <run dir>/<build name>, e.g. reports/r1/ort-fp32",
    )
    p.add_argument(
        "--candidate",
        required=True,
        metavar="RUN/BUILD",
        help="candidate as <run dir>/<build name>",
    )
    p.add_argument("--policy", required=True, type=Path, help="TOML gate policy")
    p.add_argument(
        "--allow-cross-device",
        action="store_true",
        help="allow a speed-up between runs timed on different hardware",
    )
    p.add_argument(
        "--allow-same",
        action="store_true",
        help="allow the baseline and the candidate to be the same build (a self-check)",
    )
    p.add_argument(
        "--disagreement-labels",
        type=Path,
        default=None,
        metavar="CSV",
        help="the candidate run's disagreements.csv with its label column filled in",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write gate.json/.md/-junit.xml (default: the candidate's run)",
    )
    p.set_defaults(func=run)


def split_ref(ref: str, flag: str) -> tuple[Path, str]:
    """``reports/r1/ort-fp32`` -> (Path("reports/r1"), "ort-fp32")."""
    run_dir, sep, build = ref.rstrip("/").rpartition("/")
    if not sep or not run_dir or not build:
        raise ConfigError(
            f"{flag} {ref!r} must be <run dir>/<build name>, e.g. reports/20250101-abc/ort-fp32"
        )
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag}: {path} is a file, not a run directory; fix the path")
    if not (path / "run.json").is_file():
        raise ConfigError(
            f"{flag}: {path} is not a run directory (no run.json); run `workbench run` or "
            "`workbench demo` first, or fix the path"
        )
    return path, build


def _refresh_report(run_dir: Path) -> None:
    """Re-render the run's existing report.html so it opens with the new verdict."""
    if (run_dir / "run.json").is_file() and (run_dir / "report.html").is_file():
        from workbench.report.render import render_report

        render_report(run_dir)


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.rundir import check_not_busy
    from workbench.fileio import check_writable_dir
    from workbench.gate import evaluate_gate, load_policy, write_gate_outputs

    policy = load_policy(args.policy)
    base_dir, base_build = split_ref(args.baseline, "--baseline")
    cand_dir, cand_build = split_ref(args.candidate, "--candidate")
    out_dir = args.out or cand_dir
    check_writable_dir(out_dir, "--out folder", "pass --out a writable folder")
    for path in {base_dir, cand_dir, Path(out_dir)}:
        check_not_busy(path)
    if args.disagreement_labels is not None:
        from workbench.experiment.traffic import apply_disagreement_labels

        apply_disagreement_labels(cand_dir, args.disagreement_labels)
    decision = evaluate_gate(
        base_dir,
        base_build,
        cand_dir,
        cand_build,
        policy,
        allow_cross_device=args.allow_cross_device,
        allow_same=args.allow_same,
    )
    paths = write_gate_outputs(decision, out_dir)
    _refresh_report(Path(out_dir))
    print_decision(decision, f"gate.md: {paths['markdown']}")
    return decision.exit_code


def print_decision(decision: GateDecision, where: str = "", tail: str = "") -> None:
    """The checks, the warnings, then one last line with the verdict and the first reason
    (run, gate, demo and search print the same)."""
    for check in decision.checks:
        print(check.message)
    for w in decision.warnings:
        print(f"warning: {w}")
    if where:
        print(where)
    if decision.reasons:
        print(f"{len(decision.reasons)} of {len(decision.checks)} checks did not pass")
    print(decision.summary + tail)
