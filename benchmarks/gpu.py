"""GPU benchmark: the shipped ``gpu`` experiment, CPU and CUDA builds of the default classifier.

A thin script over the engine (no second "run everything"): it runs
``workbench/experiment/shipped/gpu.toml`` (or ``--experiment``), writes the usual run
directory with its report, and a JSON table of every build x shape for the benchmarks
folder. The same as ``workbench run --shipped gpu``, plus the table.

    PYTHONPATH=. python3 benchmarks/gpu.py --reports /tmp/reports --json gpu_experiment.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def rows(run: Any) -> list[dict[str, Any]]:
    """One row per build and latency shape, with accuracy and agreement vs the reference."""
    out = []
    for b in run.builds:
        for lat in b.latency:
            out.append(
                {
                    "build": b.name,
                    "backend": b.backend,
                    "device": b.device,
                    "precision": b.precision,
                    "batch": lat.batch_size,
                    "seq": lat.seq_len,
                    "p50_ms": round(lat.p50_ms, 4),
                    "p99_ms": round(lat.p99_ms, 4),
                    "seq_per_s": round(lat.throughput_seq_per_s, 1),
                    "timer": lat.timer,
                    "accuracy": b.accuracy.accuracy if b.accuracy else None,
                    "agreement_vs_reference": b.accuracy.agreement if b.accuracy else None,
                }
            )
    return out


def table(rows_: list[dict[str, Any]]) -> str:
    """Markdown table of ``rows``."""
    head = "| build | device | batch | seq | p50 ms | seq/s | accuracy | agreement |"
    lines = [head, "|" + "---|" * 8]
    for r in rows_:
        acc = "—" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        agr = "—" if r["agreement_vs_reference"] is None else f"{r['agreement_vs_reference']:.4f}"
        lines.append(
            f"| {r['build']} | {r['device']} | {r['batch']} | {r['seq']} | {r['p50_ms']:.3f} | "
            f"{r['seq_per_s']:.0f} | {acc} | {agr} |"
        )
    return "\n".join(lines)


def with_ort_cuda(exp: Any) -> Any:
    """``exp`` plus ONNX Runtime CUDA-EP builds of the same export: FP32, FP16, Q/DQ INT8."""
    import dataclasses

    from workbench.experiment.spec import default_build_name
    from workbench.results.spec import BuildSpec

    extra = []
    for precision in ("fp32", "fp16", "int8-static"):
        b = BuildSpec("onnxruntime", precision, "cuda")
        extra.append(dataclasses.replace(b, name=default_build_name(b)))
    return dataclasses.replace(exp, builds=(*exp.builds, *extra))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as the CLI does
    from workbench.experiment.engine import RunOptions, run_experiment
    from workbench.experiment.spec import load_experiment, shipped_experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", help="experiment TOML (default: the shipped gpu experiment)")
    p.add_argument("--reports", default="reports")
    p.add_argument("--run-id", default="gpu")
    p.add_argument("--json", help="write the table as JSON here")
    p.add_argument("--skip-unavailable", action="store_true")
    p.add_argument(
        "--ort-cuda",
        action="store_true",
        help="add ONNX Runtime CUDA builds (FP32, FP16, the Q/DQ INT8 model; needs "
        "onnxruntime-gpu, see docs/ort-gpu.md); listed as not run where it is missing",
    )
    args = p.parse_args(argv)
    exp = load_experiment(args.experiment or shipped_experiment("gpu"))
    if args.ort_cuda:
        exp = with_ort_cuda(exp)
    opts = RunOptions(
        reports_root=args.reports,
        run_id=args.run_id,
        skip_unavailable=args.skip_unavailable or args.ort_cuda,
        progress=False,
    )
    run, run_dir = run_experiment(exp, opts)
    data = {"gpu": run.provenance.gpu, "run_dir": str(run_dir), "rows": rows(run)}
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(table(data["rows"]))
    print(f"\nreport: {run_dir / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
