"""``workbench calibset``: build a calibration set (and check it against traffic), or sweep N.

Examples::

    workbench calibset --n 512 --target traffic.txt
    workbench calibset --data reviews.csv --text-column body --label-column stars --strategy label
    workbench calibset sweep --ns 32,128,512,2048 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, GateFailedError

STRATEGY_CHOICES = ("random", "label", "length", "stratified", "matched")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibset",
        help="build a calibration set, check it against traffic, or sweep its size",
        description=(
            "Sample a calibration set into calibration_sets/<name>/ (Parquet + manifest.json), "
            "reusing it when nothing changed, and report how well it represents a target "
            "(--target traffic.txt or 'test'). `calibset sweep` calibrates with several N and "
            "seeds and plots accuracy and range spread against N."
        ),
    )
    p.add_argument("action", nargs="?", choices=("build", "sweep"), default="build")
    p.add_argument("--data", help="CSV/TSV/JSONL/Parquet/Arrow/TXT or a saved Dataset directory")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label", help="absent column = unlabelled pool")
    p.add_argument(
        "--whole-file",
        action="store_true",
        help="sample from the whole --data file (default: its calibration split, as the demo)",
    )
    p.add_argument("--n", type=int, default=512, help="samples (default 512)")
    p.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        help="default: stratified (label x length), or length for unlabelled data",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", help="traffic sample (.txt one per line, CSV/JSONL) or 'test'")
    p.add_argument("--target-text-column", default="text")
    p.add_argument("--target-label-column", help="labels in the target file, if any")
    p.add_argument("--min-tokens", type=int, help="drop pool rows shorter than this")
    p.add_argument("--max-tokens", type=int, help="drop pool rows longer than this")
    p.add_argument("--no-dedupe", action="store_true", help="keep near-duplicate texts")
    p.add_argument("--root", default="calibration_sets", help="where sets are saved")
    p.add_argument("--name", help="set name (default from the arguments)")
    p.add_argument("--model-dir", help="model folder with tokenizer.json (default MiniLM)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--report-dir", help="also write calibset_report.json into this run dir")
    p.add_argument(
        "--fail-on",
        choices=("never", "drifting", "not-representative"),
        default="never",
        help="exit 1 when the verdict is this bad or worse (default never)",
    )
    sweep = p.add_argument_group("sweep")
    sweep.add_argument("--ns", default="32,128,512,2048", help="sizes to sweep")
    sweep.add_argument("--seeds", default="0,1,2", help="seeds per size")
    sweep.add_argument("--method", default="max", help="calibration method")
    sweep.add_argument("--onnx", help="not for sweeps: sweep your model with `workbench sweep`")
    sweep.add_argument(
        "--n-test", type=int, default=1000, help="evaluate on at most this many test texts"
    )
    sweep.add_argument("--out", default="reports/calibset-sweep", help="sweep output directory")
    p.set_defaults(func=run)


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{flag} must be comma-separated integers, got {text!r}") from exc
    if not values:
        raise ConfigError(f"{flag} is empty")
    return values


def run(args: argparse.Namespace) -> int:
    if args.action == "sweep":
        return _run_sweep(args)
    return _run_build(args)


def _run_build(args: argparse.Namespace) -> int:
    from workbench.experiment.calibset_build import CalibsetOptions, build_calibset

    opts = CalibsetOptions(
        data=args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        whole_file=args.whole_file,
        n=args.n,
        strategy=args.strategy,
        seed=args.seed,
        target=args.target,
        target_text_column=args.target_text_column,
        target_label_column=args.target_label_column,
        min_tokens=args.min_tokens,
        max_tokens=args.max_tokens,
        dedupe=not args.no_dedupe,
        root=args.root,
        name=args.name,
        model_dir=args.model_dir,
        max_length=args.max_length,
        report_dir=args.report_dir,
    )
    cs, report_file = build_calibset(opts)
    print(format_set(cs))
    report = cs.manifest.representativeness
    if report is None:
        return 0
    print(format_report(report))
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if report_file is not None:
        print(f"report: {report_file}")
    order = ("representative", "drifting", "not representative")
    fail_at = {"never": 99, "drifting": 1, "not-representative": 2}[args.fail_on]
    if order.index(report.verdict) >= fail_at:
        raise GateFailedError(f"calibration set is {report.verdict} (--fail-on {args.fail_on})")
    return 0


def format_set(cs: Any) -> str:
    """A few lines describing a calibration set (for the CLI)."""
    m = cs.manifest
    s = m.length_stats
    labels = ", ".join(f"{k} {v}" for k, v in m.label_histogram.items()) or "unlabelled"
    seq = m.profile_suggestion["seq_len"]
    f = m.filters
    return "\n".join(
        [
            f"calibration set: {cs.dir}",
            f"  N={m.n} strategy={m.strategy} seed={m.seed} tokenizer={m.tokenizer_name} "
            f"max_length={m.max_length}",
            f"  source: {m.source_path or '(in memory)'} sha256 {m.source_sha256[:12]}; pool "
            f"{m.pool_size}, {f.get('dropped_duplicates', 0)} near-duplicates dropped, "
            f"{f.get('dropped_by_length', 0)} outside the length filter",
            f"  labels: {labels}",
            f"  token length: p50 {s['p50']:.0f}  p90 {s['p90']:.0f}  p99 {s['p99']:.0f}  "
            f"max {s['max']:.0f}  truncated {s['truncated_share']:.1%}",
            f"  TensorRT profile (seq len): min {seq['min']} / opt {seq['opt']} / max {seq['max']}",
            *[f"  note: {n}" for n in m.notes],
        ]
    )


def format_report(r: Any) -> str:
    """One block summarising a RepresentativenessReport (for the CLI)."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    lines = [
        f"vs {r.target} ({r.target_lengths.n} texts): {r.verdict.upper()}",
        f"  token length PSI {r.length_psi:.3f}, KS {r.length_ks_statistic:.3f} "
        f"(p={r.length_ks_pvalue:.2g}); p50/p90 {r.calibration_lengths.p50:.0f}/"
        f"{r.calibration_lengths.p90:.0f} vs {r.target_lengths.p50:.0f}/"
        f"{r.target_lengths.p90:.0f}",
        f"  truncated at {r.max_length}: {pct(r.calibration_lengths.truncated_share)} vs "
        f"{pct(r.target_lengths.truncated_share)}; [UNK] {pct(r.calibration_unk_rate)} vs "
        f"{pct(r.target_unk_rate)}",
        f"  word-piece coverage {pct(r.vocab_token_coverage)} (same-size random target "
        f"sample: {pct(r.vocab_token_coverage_reference)})",
    ]
    seq = r.profile_suggestion["seq_len"]
    lines.append(
        f"  TensorRT profile from the target (seq len): min {seq['min']} / opt {seq['opt']} / "
        f"max {seq['max']}"
    )
    if r.label_tv_distance is not None:
        lines.append(f"  labels: TV {r.label_tv_distance:.3f}, JS {r.label_js_distance:.3f}")
    return "\n".join(lines)


def _run_sweep(args: argparse.Namespace) -> int:
    """The N x seed grid as a sweep on the Ray engine (resumable; see docs/sweep.md)."""
    from workbench.experiment.calibset_sweep import calibset_sweep_spec, summarize
    from workbench.experiment.sweep_run import SweepOptions, run_sweep

    if args.onnx:
        raise ConfigError(
            "calibset sweep runs the default classifier; for your model write an experiment "
            "(`workbench init`) and sweep calibration.n with `workbench sweep`"
        )
    data = {"text_column": args.text_column, "label_column": args.label_column}
    if args.data:
        data["file"] = str(Path(args.data).resolve())
    calibration: dict = {"method": args.method}
    if args.strategy:
        calibration["strategy"] = args.strategy
    spec = calibset_sweep_spec(
        _ints(args.ns, "--ns"),
        _ints(args.seeds, "--seeds"),
        data=data,
        calibration=calibration,
        n_test=args.n_test,
    )
    result, out = run_sweep(spec, SweepOptions(out_dir=args.out))
    print(summarize(result, out))
    print(f"sweep: {out / 'sweep.html'}")
    return 0 if all(c.status == "done" for c in result.cells) else 1
