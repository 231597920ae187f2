"""CPU latency of FP32 vs INT8 builds of the default classifier, side by side in one run.

Each build is timed in its own child process (true peak RSS, no allocator
carry-over); builds are interleaved over several rounds and the median of the
rounds' p50 is reported, so background load hits every build alike. Ratios are
ort-fp32 / build at the same shape. Prints a table and writes JSON.

    python benchmarks/cpu_int8.py [--rounds 3] [--iterations 50] [--out results/cpu_int8.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from workbench.backends.onnxruntime.export import export_onnx
from workbench.backends.pytorch.prepare import prepare_classifier
from workbench.data.datasets import load_rotten_tomatoes, make_splits
from workbench.data.tokenize import TextTokenizer
from workbench.evaluate.isolated import measure_isolated
from workbench.provenance import collect_provenance
from workbench.results.serde import to_dict

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
    from _timing import isolated_spec
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result
    from benchmarks._timing import isolated_spec

SHAPES = [(1, 32), (1, 128), (8, 128), (32, 128)]


def _builds(
    calib_n: int, max_train: int | None = None
) -> tuple[list[tuple[str, str, str, str]], str]:
    from workbench.backends.onnxruntime.build import quantize_dynamic_int8
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate
    from workbench.data.calibset import build_calibration_set
    from workbench.fileio import cache_root

    data = load_rotten_tomatoes()
    splits = make_splits(data)
    art = prepare_classifier(splits, max_train=max_train)  # max_train: --smoke only
    onnx_path = export_onnx(art).onnx_path
    tok = TextTokenizer.from_model_dir(art.encoder_dir, 128)
    cs = build_calibration_set(
        splits.calibration_pool,
        calib_n,
        tok,
        root=cache_root() / "calibration_sets",
        source_path=data.source_path,
        source_sha256=data.source_sha256,
    )
    table = calibrate(onnx_path, cs.batches(tok), method="entropy", open_runner=open_ort_runner)
    static = cache_root() / "bench" / "int8-static.onnx"
    write_qdq_model(onnx_path, table, static)
    dynamic = quantize_dynamic_int8(onnx_path).path
    builds = [
        ("torch-fp32", "pytorch", str(art.path), "fp32"),
        ("ort-fp32", "onnxruntime", onnx_path, "fp32"),
        ("ort-int8-static", "onnxruntime", str(static), "int8-static"),
        ("ort-int8-dynamic", "onnxruntime", str(dynamic), "int8-dynamic"),
    ]
    return builds, str(tok.path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--calib-n", type=int, default=512)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cpu_int8.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: does the script still run")
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    before = load_average()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shapes = SHAPES[:1] if args.smoke else SHAPES
    if args.smoke:  # CI: every step once (numbers meaningless)
        args.rounds, args.iterations, args.calib_n = 1, 2, 16
    builds, tok_file = _builds(args.calib_n, 200 if args.smoke else None)
    p50s: dict[tuple[str, int, int], list[float]] = {}
    p99s: dict[tuple[str, int, int], list[float]] = {}
    rss: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, backend, model, precision in builds:
            prec = "fp32" if backend == "pytorch" else precision
            spec = isolated_spec(
                backend, model, tok_file, prec, shapes,
                iterations=args.iterations, threads=args.threads,
            )  # fmt: skip
            out = measure_isolated(spec)
            rss[name] = max(rss.get(name, 0.0), out.peak_rss_mb)
            for lat in out.latency:
                p50s.setdefault((name, lat.batch_size, lat.seq_len), []).append(lat.p50_ms)
                p99s.setdefault((name, lat.batch_size, lat.seq_len), []).append(lat.p99_ms)
    rows = []
    for name, *_ in builds:
        for batch, seq in shapes:
            p50 = statistics.median(p50s[(name, batch, seq)])
            base = statistics.median(p50s[("ort-fp32", batch, seq)])
            torch_base = statistics.median(p50s[("torch-fp32", batch, seq)])
            rows.append(
                {
                    "build": name,
                    "batch": batch,
                    "seq": seq,
                    "p50_ms": p50,
                    "p99_ms": statistics.median(p99s[(name, batch, seq)]),
                    "seq_per_s": batch / (p50 / 1e3),
                    "speedup_vs_ort_fp32": base / p50,
                    "speedup_vs_torch_fp32": torch_base / p50,
                    "peak_rss_mb": rss[name],
                }
            )
    print(
        f"{'build':<18}{'batch':>6}{'seq':>5}{'p50 ms':>9}{'p99 ms':>9}{'seq/s':>9}"
        f"{'×ort-fp32':>10}{'×torch':>8}{'RSS MB':>8}"
    )
    for r in rows:
        print(
            f"{r['build']:<18}{r['batch']:>6}{r['seq']:>5}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['seq_per_s']:>9.1f}{r['speedup_vs_ort_fp32']:>10.2f}"
            f"{r['speedup_vs_torch_fp32']:>8.2f}{r['peak_rss_mb']:>8.0f}"
        )
    result = {
        "benchmark": "cpu_int8",
        "rounds": args.rounds,
        "iterations": args.iterations,
        "rows": rows,
        "provenance": to_dict(collect_provenance()),
    }
    save_result(args.out, result, before, force=args.force_overwrite)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
