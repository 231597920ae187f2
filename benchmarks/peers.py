"""The workbench's INT8 builds next to ONNX Runtime's and NVIDIA ModelOpt's, same model and data.

Rows: workbench Q/DQ (max, entropy; per-channel and per-tensor), the searched build (float
list read from cpu_fused_int8.json), ORT ``quantize_static`` (MinMax; Entropy with 2048 bins
via ``create_calibrator``) and ModelOpt ONNX INT8 PTQ (default op types + entropy; MatMul/Gemm
+ max), each run from its own virtual environment (``--modelopt-python``; it pins onnx~=1.21).
Each calibration runs in a child process for its wall time and peak RSS. Every build is judged
on the gate split of cpu_fused_int8.py (accuracy, agreement, KL, 95% CI of the accuracy
change vs ORT FP32, INT8 MAC share, latency at batch 1 and 8 x seq 128). ORT's calibrators
hold every activation in memory, so they get the first 128 samples of the calibration set;
the workbench is measured on the same 128 and on the full set.

    python benchmarks/peers.py [--modelopt-python /path/venv/bin/python] [--data-file F.csv ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cpu_fused_int8 as cf  # sibling benchmark module
from _results import add_overwrite_flag, load_average, save_result

ORT_N = 128


def calibrate_one(kind: str, onnx_path: str, calib_npz: str, out: str, search_json: str) -> None:
    """Child-process entry: make one INT8 build, print its wall time and peak RSS as JSON."""
    t0 = time.perf_counter()
    data = np.load(calib_npz)
    feeds = [
        {k: data[k][i : i + 16] for k in data.files} for i in range(0, len(data["input_ids"]), 16)
    ]
    if kind.startswith("ort-"):
        from workbench.backends.onnxruntime.build import quantize_static_int8_ort

        method = "max" if kind == "ort-minmax" else "entropy"
        from workbench.fileio import sha256_file

        q = quantize_static_int8_ort(onnx_path, feeds, f"peers:{sha256_file(calib_npz)}", method)
        os.replace(q.path, out)
    else:  # workbench-<method>-<pc|pt> or workbench-searched
        from workbench.backends.onnxruntime.fusion import fuse_bert, unshare_dequantize
        from workbench.calibration.qdq import write_qdq_model
        from workbench.calibration.table import calibrate

        exclude: list[str] = []
        if kind == "workbench-searched":  # fused graph, chosen method/granularity, float list
            chosen = json.loads(Path(search_json).read_text())["search"]["chosen"]
            onnx_path = str(fuse_bert(onnx_path, num_heads=chosen["num_heads"]).path)
            method, per_channel = chosen["method"], chosen["per_channel"]
            exclude = cf._patterns(chosen["float_nodes"])
        else:
            _, method, gran = kind.split("-")
            per_channel = gran == "pc"
        table = calibrate(onnx_path, feeds, method)
        shared = write_qdq_model(onnx_path, table, out + ".shared.onnx", per_channel, exclude)
        unshare_dequantize(shared, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak}))


_RSS_WRAP = """
import resource, runpy
try:
    runpy.run_module("modelopt.onnx.quantization", run_name="__main__", alter_sys=True)
finally:
    print("PEAK_RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def modelopt_build(python: str, onnx_path: str, npz: str, out: str, matmul_max: bool) -> dict:
    """ModelOpt's ONNX INT8 PTQ through its CLI in its own venv: wall time and peak RSS."""
    n = int(np.load(npz)["input_ids"].shape[0])
    shapes = ",".join(f"{k}:{n}x128" for k in ("input_ids", "attention_mask", "token_type_ids"))
    cmd = [
        python,
        "-c",
        _RSS_WRAP,
        "--onnx_path",
        onnx_path,
        "--quantize_mode",
        "int8",
        "--calibration_data_path",
        npz,
        "--calibration_shapes",
        shapes,
        "--calibration_eps",
        "cpu",
        "--high_precision_dtype",
        "fp32",
        "--output_path",
        out,
    ]
    if matmul_max:
        cmd += ["--op_types_to_quantize", "MatMul", "Gemm", "--calibration_method", "max"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not Path(out).is_file():
        lines = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln]
        return {"seconds": seconds, "error": f"rc {proc.returncode}: {lines[-1:] or 'no message'}"}
    peak = [ln for ln in proc.stdout.splitlines() if ln.startswith("PEAK_RSS_MB")]
    return {"seconds": seconds, "peak_rss_mb": float(peak[-1].split()[1]) if peak else math.nan}


def _child(kind: str, onnx_path: str, npz: str, out: str, search_json: str) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, onnx_path, npz, out, search_json]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _npz(feeds: list[dict[str, np.ndarray]], n: int, path: Path) -> str:
    """The first ``n`` calibration samples padded to 128 tokens (ModelOpt needs one shape)."""
    stacked = {}
    for k in feeds[0]:
        rows = [np.pad(f[k], ((0, 0), (0, 128 - f[k].shape[1]))) for f in feeds]
        stacked[k] = np.concatenate(rows)[:n].astype(np.int64)
    np.savez(path, **stacked)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=5, metavar=("KIND", "ONNX", "NPZ", "OUT", "SEARCH"))
    ap.add_argument("--modelopt-python", default=None)
    ap.add_argument("--search-json", default=str(cf.RESULTS / "cpu_fused_int8.json"))
    ap.add_argument("--data-file", default=None)
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--calib-n", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--no-latency", action="store_true", help="accuracy only (dataset sweeps)")
    ap.add_argument("--whole-test", action="store_true", help="judge on the whole test split")
    ap.add_argument("--out", default=str(cf.RESULTS / "peers.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: does the script still run")
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.smoke:  # CI: every step once on a few rows (numbers meaningless)
        args.rounds, args.iterations, args.n_test, args.calib_n = 1, 2, args.n_test or 40, ORT_N
    if args.one:
        calibrate_one(*args.one)
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    from workbench.experiment.sensitivity import node_groups
    from workbench.provenance import collect_provenance
    from workbench.results.serde import to_dict

    before = load_average()
    s = cf.setup(
        args.data_file,
        args.text_column,
        args.label_column,
        args.calib_n,
        args.n_test,
        halves=not args.whole_test,
        max_train=cf.SMOKE_TRAIN if args.smoke else None,
    )
    tmp = Path(tempfile.mkdtemp(prefix="wb-peers-"))
    full, small = (
        _npz(s.calib_feeds, args.calib_n, tmp / "full.npz"),
        _npz(s.calib_feeds, ORT_N, tmp / "small.npz"),
    )
    have_search = Path(args.search_json).is_file() and not args.data_file
    if have_search:  # the child needs ONNX node names and heads (older files: module paths)
        info = json.loads(Path(args.search_json).read_text())
        chosen = info["search"]["chosen"]
        by_path = {g.module_path: g.onnx_node for g in node_groups(s.onnx_path, 128)}
        chosen.setdefault("num_heads", s.num_heads)
        chosen.setdefault("float_nodes", [by_path[p] for p in chosen["float"]])
        args.search_json = str(tmp / "search.json")
        Path(args.search_json).write_text(json.dumps(info))
    kinds = [
        (f"workbench-{m}-{g}", npz)
        for m in ("max", "entropy")
        for g in ("pc", "pt")
        for npz in (full, small)
    ]
    if have_search:
        kinds.append(("workbench-searched", full))
    kinds += [("ort-minmax", small), ("ort-entropy2048", small)]
    if args.smoke:  # one of ours and one of ORT's: the smoke proves the plumbing, not the ranking
        kinds = [("workbench-max-pc", full), ("ort-minmax", small)]
    builds, calib = [cf.Build("ort-fp32", "onnxruntime", s.onnx_path, "fp32", "FP32")], {}
    for kind, npz in kinds:
        name = f"{kind}-n{ORT_N}" if npz == small and kind.startswith("workbench") else kind
        out = str(tmp / f"{name}.onnx")
        calib[name] = _child(kind, s.onnx_path, npz, out, args.search_json)
        builds.append(cf.Build(name, "onnxruntime", out, "int8-static", kind))
    if args.modelopt_python:
        for label, mm in (("modelopt-default-entropy", False), ("modelopt-matmul-max", True)):
            out = str(tmp / f"{label}.onnx")
            # the 128-sample set: ModelOpt calibrates it as one batch (512 ran out of memory here)
            calib[label] = modelopt_build(args.modelopt_python, s.onnx_path, small, out, mm)
            if "error" in calib[label]:
                print(f"{label} failed: {calib[label]['error']}")
                continue
            builds.append(cf.Build(label, "onnxruntime", out, "int8-static", label))
    macs = {g.onnx_node: g.macs for g in node_groups(s.onnx_path, 128)}
    ref = cf.logits_of(builds[0], s)
    rows = {b.name: {**cf.quality(b, s, ref, macs), **calib.get(b.name, {})} for b in builds}
    failed = {k: v for k, v in calib.items() if "error" in v}
    if not args.no_latency:
        lat = cf.latency(builds, s, args.rounds, args.iterations, 0)
        for name, row in rows.items():
            for batch, _ in cf.SHAPES:
                row[f"p50_ms_b{batch}"] = lat["p50"][f"{name}@{batch}"]
                row[f"x_ort_fp32_b{batch}"] = (
                    lat["p50"][f"ort-fp32@{batch}"] / row[f"p50_ms_b{batch}"]
                )
    _print(rows)
    save_result(
        args.out,
        {
            "benchmark": "peers",
            "dataset": s.dataset,
            "n_gate_split": len(s.labels),
            "calibration_n": args.calib_n,
            "ort_calibration_n": ORT_N,
            "modelopt": bool(args.modelopt_python),
            "rows": list(rows.values()),
            "failed": failed,
            "provenance": to_dict(collect_provenance()),
        },
        before,
        force=args.force_overwrite,
    )
    print(f"\nwrote {args.out}")


def _print(rows: dict[str, dict]) -> None:
    print(
        f"{'build':<34}{'acc':>7}{'agree':>7}{'Δacc pts [95% CI]':>24}{'int8 MAC':>9}"
        f"{'calib s':>8}{'b1 ×fp32':>9}{'b8 ×fp32':>9}"
    )
    for name, r in rows.items():
        ci = f"{r['acc_diff_pts']:+.2f} [{r['acc_ci_pts'][0]:+.2f},{r['acc_ci_pts'][1]:+.2f}]"
        print(
            f"{name:<34}{r['accuracy']:>7.4f}{r['agreement']:>7.3f}{ci:>24}"
            f"{100 * r.get('int8_mac_share', 0):>8.0f}%{r.get('seconds', 0):>8.1f}"
            f"{r.get('x_ort_fp32_b1', math.nan):>9.2f}{r.get('x_ort_fp32_b8', math.nan):>9.2f}"
        )


if __name__ == "__main__":
    main()
