"""``workbench search EXPERIMENT.toml``: the fastest static INT8 build that passes the gate."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="find the fastest INT8 build (static or dynamic, plain or fused) that passes the gate",
        description=(
            "Ranks layers by INT8 sensitivity on half of the test split, searches static and "
            "dynamic INT8 on the plain and fused graphs, calibration method, weight granularity, "
            "recovery options and layers kept in float, times the candidates on this "
            "machine, and verifies the choice on the other half (never seen by the search). "
            "Writes search.json, the chosen Q/DQ model, its table, TensorRT cache and an "
            "exclude.toml to paste into the experiment. Exit codes follow the gate half's "
            "verdict on the choice: 0 PASS, 1 FAIL (or no candidate passed the search half), 4 "
            "INCONCLUSIVE (the gate half cannot tell; the last line says what would settle it), "
            "2 bad input, 70 internal error."
        ),
    )
    p.add_argument("experiment", nargs="?", help="experiment TOML (default: --shipped demo)")
    p.add_argument("--shipped", default="demo", help="shipped experiment when no file is given")
    p.add_argument("--out", default="search", help="output folder")
    p.add_argument(
        "--calibration-sets",
        default="calibration_sets",
        help="where calibration sets are saved and reused (default: calibration_sets)",
    )
    p.add_argument("--methods", default="max,entropy", help="calibration methods to try")
    p.add_argument(
        "--ranking",
        choices=["proxy", "task"],
        default="proxy",
        help="proxy: SQNR from one FP32 pass (fast); task: per-layer builds (slow)",
    )
    p.add_argument("--max-float", type=int, default=8, help="most layers kept in float")
    p.add_argument("--kinds", default="static,dynamic", help="INT8 build kinds to search")
    p.add_argument("--graphs", default="plain,fused", help="graphs to search (fused: BERT only)")
    p.add_argument("--no-recovery", action="store_true", help="no accuracy-recovery options")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="accept a build that fails no rule on the search half even where the half could "
        "settle every rule (much faster when builds sit at the agreement floor; the choice is "
        "then likely INCONCLUSIVE on the gate half)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="stop searching configurations after this many minutes (every all-INT8 start is "
        "still scored and timed; search.json names what was cut)",
    )
    p.add_argument("--quick", action="store_true", help="small subsets")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from workbench.experiment.calibrate_methods import parse_methods
    from workbench.experiment.search import SearchOptions, run_search
    from workbench.experiment.spec import load_experiment, shipped_experiment
    from workbench.results.fmt import signed

    exp = load_experiment(args.experiment or shipped_experiment(args.shipped))
    if args.quick:
        exp = replace(exp, quick=True)
    opts = SearchOptions(
        out_dir=args.out,
        calibration_root=args.calibration_sets,
        methods=tuple(parse_methods(args.methods)),
        ranking=args.ranking,
        max_float=args.max_float,
        progress=not args.no_progress,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
        graphs=tuple(g.strip() for g in args.graphs.split(",") if g.strip()),
        recovery=not args.no_recovery,
        strict=not args.lenient,
        time_budget_min=args.time_budget,
    )
    record, out = run_search(exp, opts)
    print(f"ranked {len(record.ranking)} layers ({record.ranking_kind}); most harmful first:")
    print("  " + ", ".join(record.ranking[:5]))
    print(f"{len(record.trials)} candidates scored on {record.n_search} search samples; "
          f"FP32 p50 {record.fp32_latency_ms:.2f} ms at batch {record.latency_shape[0]} x seq "
          f"{record.latency_shape[1]}")  # fmt: skip
    if record.best is None or record.gate_check is None:
        print(f"no candidate passed the gate on the search split; raise --max-float ({out})")
        return 1
    b, g = record.best, record.gate_check
    speed = record.fp32_latency_ms / b.latency_ms
    label = " ".join([b.kind, b.graph, *b.recovery])
    print(f"fastest passing: {label} {b.method}, "
          f"{'per-channel' if b.per_channel else 'per-tensor'} "
          f"weights, {len(b.float_modules)} layer(s) in float {b.float_modules}: "
          f"{b.latency_ms:.2f} ms ({speed:.2f}x ORT FP32)")  # fmt: skip
    print(f"on the gate split ({g.n} samples the search never saw): accuracy {g.accuracy:.2%} "
          f"vs FP32 {g.fp32_accuracy:.2%}, 95% CI of the change [{signed(g.drop_ci_low * 100)}%, "
          f"{signed(g.drop_ci_high * 100)}%], agreement {g.agreement:.2%}")  # fmt: skip
    for reason in g.reasons:
        print(f"  {reason}")
    print(f"wrote {out / 'search.json'} and {', '.join(record.files)}")
    print(f"report: {out / 'search.html'}")
    why = f" — {g.reasons[0]}" if g.reasons else ""
    print(f"gate {g.verdict}: the search's choice on the gate split{why}")
    return {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 4}[g.verdict]
