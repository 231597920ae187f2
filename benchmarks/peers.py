"""The workbench's INT8 builds next to ONNX Runtime's and NVIDIA ModelOpt's, same model and data.

Rows: workbench Q/DQ (max, entropy; per-channel and per-tensor), the searched build (float
list read from cpu_fused_int8.json), ORT ``quantize_static`` (MinMax; Entropy with 2048 bins
via ``create_calibrator``) and ModelOpt ONNX INT8 PTQ (default op types + entropy; MatMul/Gemm
+ max), each run from its own virtual environment (``--modelopt-python``; it pins onnx~=1.21).
Each calibration runs in a child process for its wall time and peak RSS. Every build is judged
on the gate split of cpu_fused_int8.py (accuracy, agreement, KL, 95% CI of the accuracy
change vs ORT FP32, latency at batch 1 and 8 x seq 128).

Set up alike, as a careful user would (issue 21 item 5):
* every build gets the same calibration rows (``--calib-n``, default min(512, pool));
  ORT's calibrators are fed 16 rows per ``collect_data`` call (ranges and histograms
  merged call by call), so the whole set fits in memory instead of being cut to 128;
* ORT ``quantize_static``: symmetric int8, per-channel weights, MatMul/Gemm inputs only
  (``OpTypesToExcludeOutputQuantization=["MatMul","Gemm"]``: no Q/DQ on MatMul outputs,
  the workbench's placement);
* two coverage columns: "INT8 MAC" is the MAC share run by ORT's integer kernels in the
  optimized graph; "q nodes"/"q acts" count MatMul/Gemm nodes with a quantized input and
  quantized activation tensors in the Q/DQ file (which nodes are quantized);
* each peer is compared with the workbench build of the same method and granularity on
  the same rows (paired bootstrap of the accuracy difference): a CI that holds 0 is
  printed and saved as a tie.

ModelOpt runs from its own environment (``--modelopt-python``): install it there with
``pip install "nvidia-modelopt[onnx]"`` (it pulls onnxruntime-gpu, which replaces the CPU
onnxruntime, hence a separate venv). Without that flag, or when that Python cannot import
``modelopt.onnx``, ModelOpt rows are skipped with that reason in the JSON.

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

CALIB_N_MAX = 512
ORT_CHUNK = 16  # calibration rows per ORT collect_data call (bounded memory)
# peer -> the workbench build it is compared with (same method and weight granularity)
COUNTERPART = {
    "ort-minmax": "workbench-max-pc",
    "ort-entropy2048": "workbench-entropy-pc",
    "modelopt-matmul-max": "workbench-max-pc",
    "modelopt-default-entropy": "workbench-entropy-pc",
}


def calibrate_one(kind: str, onnx_path: str, calib_npz: str, out: str, search_json: str) -> None:
    """Child-process entry: make one INT8 build, print its wall time and peak RSS as JSON."""
    t0 = time.perf_counter()
    data = np.load(calib_npz)
    feeds = [
        {k: data[k][i : i + 16] for k in data.files} for i in range(0, len(data["input_ids"]), 16)
    ]
    if kind.startswith("ort-"):
        ort_static(onnx_path, feeds, out, "max" if kind == "ort-minmax" else "entropy")
    else:  # workbench-<method>-<pc|pt> or workbench-searched
        from workbench.backends.onnxruntime.fusion import fuse_bert, unshare_dequantize
        from workbench.backends.onnxruntime.runner import open_ort_runner
        from workbench.calibration.qdq import write_qdq_model
        from workbench.calibration.table import calibrate

        exclude: list[str] = []
        if kind == "workbench-searched":  # chosen graph, method/granularity, float list
            chosen = json.loads(Path(search_json).read_text())["search"]["best"]
            if chosen["graph"] == "fused":
                onnx_path = str(fuse_bert(onnx_path, num_heads=chosen["num_heads"]).path)
            method, per_channel = chosen["method"], chosen["per_channel"]
            exclude = cf._patterns(chosen["float_nodes"])
        else:
            _, method, gran = kind.split("-")
            per_channel = gran == "pc"
        table = calibrate(onnx_path, feeds, method, open_runner=open_ort_runner)
        shared = write_qdq_model(onnx_path, table, out + ".shared.onnx", per_channel, exclude)
        unshare_dequantize(shared, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak}))


def searched_refusal(chosen: dict | None) -> str | None:
    """Why the search's choice (``search.best`` of cpu_fused_int8.json) is no peer row, or None:
    only a static build without recovery passes is a calibration to compare."""
    if not chosen:
        return "the search JSON has no chosen build"
    if chosen["kind"] != "static" or chosen["recovery"]:
        label = " ".join([chosen["kind"], chosen["graph"], *chosen["recovery"]])
        return f"the search chose {label}: not a static calibration (no peer counterpart)"
    return None


def ort_static(onnx_path: str, feeds: list[dict], out: str, method: str) -> None:
    """ORT ``quantize_static`` set up like the workbench's build (see the module doc)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from workbench.backends.onnxruntime.build import preprocess

    rows = [
        {k: v[i : i + 1] for k, v in f.items()} for f in feeds for i in range(len(f["input_ids"]))
    ]
    cal = CalibrationMethod.MinMax if method == "max" else CalibrationMethod.Entropy
    # each collect_data call folds its chunk into the ranges (MinMax) or histograms; ORT's
    # CalibMaxIntermediateOutputs is not used: in ORT 1.32 it drops the chunk it clears
    opts: dict = {"symmetric": True} | ({} if method == "max" else {"num_bins": 2048})
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess(onnx_path, Path(tmp) / "pre.onnx")
        calibrator = create_calibrator(
            str(pre), ["MatMul", "Gemm"], str(Path(tmp) / "aug.onnx"), cal, extra_options=opts
        )
        for i in range(0, len(rows), ORT_CHUNK):  # histograms merge across calls
            calibrator.collect_data(_Reader(rows[i : i + ORT_CHUNK]))
        save_tensors_data(calibrator.compute_data(), Path(tmp) / "ranges.json")
        del calibrator
        quantize_static(
            str(pre),
            out,
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=cal,
            calibration_cache_path=str(Path(tmp) / "ranges.json"),
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
            },
        )


class _Reader:
    """ORT CalibrationDataReader over a list of feeds (each yielded once)."""

    def __init__(self, feeds: list[dict]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._it, None)


def placement(model: str) -> dict:
    """Which nodes a Q/DQ file quantizes: MatMul/Gemm nodes with a DequantizeLinear input
    and distinct activation tensors behind a QuantizeLinear (not weights)."""
    import onnx

    g = onnx.load(model, load_external_data=False).graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    q_nodes = sum(
        n.op_type in ("MatMul", "Gemm")
        and any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)
        for n in g.node
    )
    acts = {n.input[0] for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    return {"quantized_matmul_nodes": q_nodes, "quantized_activations": len(acts)}


def ties(rows: dict[str, dict], preds: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """Each peer vs its workbench counterpart: paired-bootstrap accuracy difference (pts)."""
    from workbench.results import stats

    out = {}
    for peer, wb in COUNTERPART.items():
        if peer not in preds or wb not in preds:
            continue
        ci = stats.paired_bootstrap(labels, preds[wb], preds[peer], "accuracy", 2000, 0.95, 0)
        verdict = (
            "tie"
            if ci.low <= 0 <= ci.high
            else ("peer ahead" if ci.diff > 0 else "workbench ahead")
        )
        out[peer] = {
            "vs": wb,
            "acc_diff_pts": 100 * ci.diff,
            "acc_ci_pts": [100 * ci.low, 100 * ci.high],
            "agreement_diff": rows[peer]["agreement"] - rows[wb]["agreement"],
            "verdict": verdict,
        }
    return out


def modelopt_missing(python: str | None) -> str | None:
    """Why ModelOpt rows cannot run (None: they can)."""
    if not python:
        return 'no --modelopt-python given (a venv with pip install "nvidia-modelopt[onnx]")'
    probe = subprocess.run([python, "-c", "import modelopt.onnx.quantization"], capture_output=True)
    if probe.returncode != 0:
        return f'{python} cannot import modelopt.onnx: pip install "nvidia-modelopt[onnx]" there'
    return None


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


def _pool_size(args: argparse.Namespace) -> int:
    """Rows in the calibration pool of the data ``cf.setup`` will use (same loaders)."""
    from workbench.data.datasets import load_labelled_file, load_rotten_tomatoes, make_splits

    data = None
    if args.data_file:
        data = load_labelled_file(args.data_file, args.text_column, args.label_column)
    return len(make_splits(data or load_rotten_tomatoes()).calibration_pool)


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
    ap.add_argument(
        "--calib-n", type=int, default=None, help=f"default: min({CALIB_N_MAX}, pool size)"
    )
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
        args.rounds, args.iterations, args.n_test = 1, 2, args.n_test or 40
        args.calib_n = args.calib_n or 64
    if args.one:
        calibrate_one(*args.one)
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    from workbench.evaluate.sensitivity import node_groups
    from workbench.provenance import collect_provenance
    from workbench.results.serde import to_dict

    pool = _pool_size(args)
    if args.calib_n is None:
        args.calib_n = min(CALIB_N_MAX, pool)
    elif not 0 < args.calib_n <= pool:
        print(f"--calib-n {args.calib_n}: the calibration pool has {pool} rows; pass 1..{pool}")
        raise SystemExit(2)
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
    full = _npz(s.calib_feeds, args.calib_n, tmp / "full.npz")  # every build: these rows
    skipped = {}
    have_search = Path(args.search_json).is_file() and not args.data_file
    if have_search:  # the child needs the chosen build's ONNX node names and heads
        info = json.loads(Path(args.search_json).read_text())
        chosen = (info.get("search") or {}).get("best")
        why_not = searched_refusal(chosen)
        if why_not:
            skipped["workbench-searched"], have_search = why_not, False
        else:
            chosen["num_heads"] = s.num_heads
            args.search_json = str(tmp / "search.json")
            Path(args.search_json).write_text(json.dumps(info))
    kinds = [f"workbench-{m}-{g}" for m in ("max", "entropy") for g in ("pc", "pt")]
    if have_search:
        kinds.append("workbench-searched")
    kinds += ["ort-minmax", "ort-entropy2048"]
    if args.smoke:  # one of ours and one of ORT's: the smoke proves the plumbing, not the ranking
        kinds = ["workbench-max-pc", "ort-minmax"]
    builds, calib = [cf.Build("ort-fp32", "onnxruntime", s.onnx_path, "fp32", "FP32")], {}
    for kind in kinds:
        out = str(tmp / f"{kind}.onnx")
        calib[kind] = _child(kind, s.onnx_path, full, out, args.search_json)
        builds.append(cf.Build(kind, "onnxruntime", out, "int8-static", kind))
    why = modelopt_missing(args.modelopt_python)
    for label, mm in (("modelopt-default-entropy", False), ("modelopt-matmul-max", True)):
        if why:
            skipped[label] = why
            continue
        out = str(tmp / f"{label}.onnx")
        # ModelOpt calibrates the set as one batch: peak memory grows with --calib-n
        calib[label] = modelopt_build(args.modelopt_python, s.onnx_path, full, out, mm)
        if "error" in calib[label]:
            print(f"{label} failed: {calib[label]['error']}")
            continue
        builds.append(cf.Build(label, "onnxruntime", out, "int8-static", label))
    for label, reason in skipped.items():
        print(f"{label} skipped: {reason}")
    macs = {g.onnx_node: g.macs for g in node_groups(s.onnx_path, 128)}
    ref = cf.logits_of(builds[0], s)
    rows = {b.name: {**cf.quality(b, s, ref, macs), **calib.get(b.name, {})} for b in builds}
    for b in builds[1:]:
        rows[b.name].update(placement(b.model))
    compared = {n for pair in COUNTERPART.items() for n in pair}
    preds = {b.name: cf.logits_of(b, s).argmax(1) for b in builds if b.name in compared}
    verdicts = ties(rows, preds, s.labels)
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
    for peer, v in verdicts.items():
        ci = f"[{v['acc_ci_pts'][0]:+.2f}, {v['acc_ci_pts'][1]:+.2f}]"
        print(f"{peer} vs {v['vs']}: {v['acc_diff_pts']:+.2f} pts {ci} -> {v['verdict']}")
    save_result(
        args.out,
        {
            "benchmark": "peers",
            "dataset": s.dataset,
            "n_gate_split": len(s.labels),
            "calibration_n": args.calib_n,  # every build, peers included
            "modelopt": not why,
            "skipped": skipped,
            "peer_vs_workbench": verdicts,
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
        f"{'q nodes':>8}{'q acts':>7}{'calib s':>8}{'b1 ×fp32':>9}{'b8 ×fp32':>9}"
    )
    for name, r in rows.items():
        ci = f"{r['acc_diff_pts']:+.2f} [{r['acc_ci_pts'][0]:+.2f},{r['acc_ci_pts'][1]:+.2f}]"
        print(
            f"{name:<34}{r['accuracy']:>7.4f}{r['agreement']:>7.3f}{ci:>24}"
            f"{100 * r.get('int8_mac_share', 0):>8.0f}%"
            f"{r.get('quantized_matmul_nodes', '-'):>8}{r.get('quantized_activations', '-'):>7}"
            f"{r.get('seconds', 0):>8.1f}"
            f"{r.get('x_ort_fp32_b1', math.nan):>9.2f}{r.get('x_ort_fp32_b8', math.nan):>9.2f}"
        )


if __name__ == "__main__":
    main()
