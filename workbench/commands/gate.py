"""``workbench gate``: A/B-gate a candidate build against a baseline under a TOML policy.

Example::

    workbench gate --baseline reports/r1/ort-fp32 --candidate reports/r2/ort-int8-dynamic \\
        --policy gate.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.gating import PairGate, gate_pair

    req = PairGate(
        baseline=args.baseline,
        candidate=args.candidate,
        policy_file=args.policy,
        out_dir=args.out,
        allow_cross_device=args.allow_cross_device,
        allow_same=args.allow_same,
        disagreement_labels=args.disagreement_labels,
    )
    decision, paths = gate_pair(req)
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
