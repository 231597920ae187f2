"""``workbench demo``: the shipped experiment (default classifier, Rotten Tomatoes) end to end,
then -- when the gated INT8 build does not PASS -- the search for the fastest build that does.

Exit code: the judge's verdict on the build the demo recommends (the gated build when it
passes, else the search's choice; the gated build, INCONCLUSIVE, when it was INCONCLUSIVE and
the search finds only FAILs): 0 PASS, 1 FAIL (or no build passes and the gated one failed),
4 INCONCLUSIVE; 0 with --no-gate. docs/verdicts.md explains the three verdicts.
"""

from __future__ import annotations

import argparse

from workbench.commands._run_args import add_run_args, apply_run_args, run_and_print


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the shipped experiment end to end, then the fastest INT8 build that passes (CPU)",
        description=(
            "Runs workbench/experiment/shipped/demo.toml (calibrate -> quantize -> evaluate -> "
            "gate -> reports/<run-id>/report.html). When the gated INT8 build does not "
            "PASS, runs the search (as `workbench search`) into reports/<run-id>/search/ and "
            "ends on the fastest build that passes on rows the search never saw, with its "
            "speed-up and 95%% CI -- or on why none does and what would help. --quick: small "
            "subsets and a smaller search (a few minutes on 2 cores). Exit code: the verdict "
            "on the recommended build: 0 PASS, 1 FAIL (or none passes and the gated build "
            "failed), 4 INCONCLUSIVE (the gated build stays recommended when it was "
            "INCONCLUSIVE and the search finds only failures)."
        ),
    )
    add_run_args(p)
    p.add_argument(
        "--no-search",
        action="store_true",
        help="stop at the run's verdict (exit code per the gated build's verdict)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.spec import load_experiment, shipped_experiment

    exp = apply_run_args(load_experiment(shipped_experiment("demo")), args)
    code, record, run_dir = run_and_print(exp, args, strict_gate=True)
    if args.no_search:
        return code
    from workbench.experiment.story import StoryOptions, gate_decision, recommend

    d = gate_decision(record, run_dir)
    if d is None:  # --no-gate: nothing to judge by
        return code
    if d.verdict != "PASS":
        print(f"\n{d.candidate.split('/')[-1]} is {d.verdict}: searching for the fastest INT8 "
              f"build that passes (as `workbench search`), into {run_dir / 'search'}")  # fmt: skip
    opts = StoryOptions(calibration_root=args.calibration_sets, progress=not args.no_progress)
    rec = recommend(record, run_dir, opts)
    if rec is None:  # cannot happen: the gate ran
        return code
    print()
    print("\n".join(rec.lines()))
    return rec.exit_code
