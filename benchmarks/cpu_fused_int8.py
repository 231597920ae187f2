"""FP32 vs fused vs INT8 builds of the default classifier on this CPU, side by side in one run.

Builds: PyTorch FP32, ORT FP32, ORT FP32 fused (MultiHeadAttention + SkipLayerNorm + BiasGelu,
workbench.backends.onnxruntime.fusion), the workbench's static Q/DQ INT8 (per-channel and
per-tensor weights) as shipped (shared Q/DQ) and with a private Q/DQ per consumer, the same on
the fused graph, and ORT dynamic INT8 (plain and fused). For each: accuracy, agreement and
probability KL against ORT FP32 on the test split, the paired-bootstrap accuracy drop (95% CI),
INT8 MatMul coverage (nodes and MAC share at seq 128, read from ORT's optimized graph) and
latency at batch 1 and 8 x seq 128. Latency: one child process per build and shape set,
builds interleaved over rounds, the median of the rounds' p50 reported. Prints a table and
writes JSON.

    python benchmarks/cpu_fused_int8.py [--quick] [--method max] [--rounds 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
    from _timing import isolated_spec
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result
    from benchmarks._timing import isolated_spec

SHAPES = [(1, 128), (8, 128)]
SMOKE_TRAIN = 200  # --smoke: the classifier trained on a few rows (cached apart)
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Setup:
    """The classifier, its ONNX export, tokenizer, calibration batches and test split."""

    model_dir: str
    onnx_path: str
    tokenizer_file: str
    num_heads: int
    calib_feeds: list
    calib_sha: str
    texts: list  # the gate split: every build is judged here
    labels: np.ndarray
    search_texts: list  # the search split (disjoint): only the search sees it
    search_labels: np.ndarray
    dataset: str


@dataclass(frozen=True)
class Build:
    name: str
    backend: str  # "pytorch" | "onnxruntime"
    model: str
    precision: str
    detail: str


def setup(
    data_file: str | None,
    text_col: str,
    label_col: str,
    calib_n: int,
    n_test,
    halves=True,
    max_train: int | None = None,
) -> Setup:
    """Prepare (or reuse) the classifier, export and calibration set; split the test set in
    a search half and a gate half (``halves=False``: the whole test set is the gate split)."""
    from workbench.backends.onnxruntime.export import export_onnx
    from workbench.backends.pytorch.prepare import prepare_classifier
    from workbench.data.calibset import build_calibration_set
    from workbench.data.datasets import (
        load_labelled_file,
        load_rotten_tomatoes,
        make_splits,
        subset,
    )
    from workbench.data.tokenize import TextTokenizer
    from workbench.fileio import cache_root

    data = load_labelled_file(data_file, text_col, label_col) if data_file else None
    data = data or load_rotten_tomatoes()
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
    test = subset(splits.test, n_test).shuffle(seed=1)
    half = len(test) // 2 if halves else 0
    search, gate = test.select(range(half)), test.select(range(half, len(test)))
    cfg = json.loads((Path(art.encoder_dir) / "config.json").read_text())
    return Setup(
        str(art.path),
        str(onnx_path),
        str(tok.path),
        int(cfg["num_attention_heads"]),
        list(cs.batches(tok, batch_size=16)),
        cs.manifest_sha256,
        list(gate["text"]),
        np.asarray(gate["label"]),
        list(search["text"]),
        np.asarray(search["label"]),
        data.name,
    )


def qdq_build(
    s: Setup, base: str, method: str, per_channel: bool, private: bool, tag: str, exclude=()
):
    """Calibrate ``base`` with ``method`` and write its Q/DQ model (cached by name in the run)."""
    from workbench.backends.onnxruntime.fusion import unshare_dequantize
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate
    from workbench.fileio import cache_root, sha256_json

    key = sha256_json([base, method, per_channel, private, s.calib_sha, list(exclude)])[:16]
    out = cache_root() / "bench-fused" / key / "model.onnx"
    if not out.is_file():
        table = calibrate(base, s.calib_feeds, method, calibration_set_sha256=s.calib_sha)
        shared = out.with_suffix(".shared.onnx")
        write_qdq_model(base, table, shared, per_channel, exclude=_patterns(exclude))
        if private:
            unshare_dequantize(out.with_suffix(".shared.onnx"), out)
        else:
            os.replace(out.with_suffix(".shared.onnx"), out)
    gran = "per-channel" if per_channel else "per-tensor"
    if exclude:
        gran += f", {len(exclude)} MatMul float"
    qdq = "private Q/DQ per consumer" if private else "shared Q/DQ (as shipped)"
    return Build(tag, "onnxruntime", str(out), "int8-static", f"{method}, {gran}, {qdq}")


def _patterns(nodes) -> list[str]:
    from workbench.experiment.search_core import exclude_patterns

    return exclude_patterns(list(nodes))


def builds(s: Setup, method: str) -> list[Build]:
    from workbench.backends.onnxruntime.build import quantize_dynamic_int8
    from workbench.backends.onnxruntime.fusion import fuse_bert

    fused = str(fuse_bert(s.onnx_path, num_heads=s.num_heads).path)
    out = [
        Build("torch-fp32", "pytorch", s.model_dir, "fp32", "PyTorch eager FP32"),
        Build("ort-fp32", "onnxruntime", s.onnx_path, "fp32", "TorchScript export"),
        Build("ort-fused-fp32", "onnxruntime", fused, "fp32", "MHA+SkipLN+BiasGelu fused"),
    ]
    for base, prefix in ((s.onnx_path, "int8"), (fused, "fused-int8")):
        for pc in (True, False):
            for private in (False, True) if base == s.onnx_path else (True,):
                suffix = "-private" if private and base == s.onnx_path else ""
                tag = f"{prefix}-{'pc' if pc else 'pt'}{suffix}"
                out.append(qdq_build(s, base, method, pc, private, tag))
    out.append(_dynamic(quantize_dynamic_int8, s.onnx_path, "int8-dynamic"))
    out.append(_dynamic(quantize_dynamic_int8, fused, "fused-int8-dynamic"))
    return out


def searched_build(
    s: Setup, fused: str, methods: tuple[str, ...], max_float: int = 8, ranking: str = "task"
) -> tuple[Build, dict]:
    """Sensitivity (task metrics, or the SQNR proxy alone) on the search split, then the
    search; returns the fastest passing build."""
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.calibration.table import calibrate
    from workbench.evaluate.latency import fixed_shape_feed, measure_latency
    from workbench.experiment.search_core import Candidate, SearchSpace, Verdict, search
    from workbench.experiment.sensitivity import (
        SensitivitySpec,
        layer_sensitivity,
        model_logits,
        node_groups,
        proxy_ranking,
        score_logits,
    )
    from workbench.gate import stats

    tok = _tok(s)
    feeds = [tok.encode(s.search_texts[i : i + 32]) for i in range(0, len(s.search_texts), 32)]
    t0 = time.perf_counter()
    table = calibrate(fused, s.calib_feeds, "max")
    paths = {g.onnx_node: g.module_path for g in node_groups(fused)}
    spear: dict[str, float] = {}
    if ranking == "proxy":
        order = proxy_ranking(fused, table, feeds, SensitivitySpec(proxy_samples=128))
    else:
        sens = layer_sensitivity(
            fused,
            table,
            feeds,
            s.search_labels,
            SensitivitySpec(per_channel=True),
            progress=_progress("sensitivity"),
        )
        order = sens.ranking
        spear = {"sqnr": sens.spearman_sqnr, "mse": sens.spearman_mse}
    sens_s = time.perf_counter() - t0
    ref = model_logits(fused, feeds)
    builds_by: dict[Candidate, Build] = {}

    def build(c: Candidate) -> Build:
        if c not in builds_by:
            builds_by[c] = qdq_build(
                s, fused, c.method, c.per_channel, True, "searched", exclude=c.float_nodes
            )
        return builds_by[c]

    def score(c: Candidate) -> Verdict:
        lg = model_logits(build(c).model, feeds)
        sc = score_logits(lg, ref, s.search_labels)
        ci = stats.paired_bootstrap(s.search_labels, ref.argmax(1), lg.argmax(1), "accuracy")
        return Verdict(-ci.low <= 0.01 and sc.agreement >= 0.975, sc.accuracy)

    feed = fixed_shape_feed(s.search_texts, tok, 1, 128)

    def latency(c: Candidate) -> float:
        with OrtRunner(build(c).model) as r:
            return measure_latency(r, feed, iterations=30, warmup=5).p50_ms

    space = SearchSpace(methods, (True, False), tuple(order), max_float)
    t0 = time.perf_counter()
    res = search(space, score, latency, progress=_progress("search"))
    if res.best is None:
        raise SystemExit("the search found no passing build; raise --max-float")
    best = res.best.candidate
    info = {
        "sensitivity_seconds": sens_s,
        "search_seconds": time.perf_counter() - t0,
        "n_scored": res.n_scored,
        "ranking": ranking,
        "ranking_top10": [paths[n] for n in order[:10]],
        "spearman_proxy_vs_task": spear,
        "chosen": {
            "method": best.method,
            "per_channel": best.per_channel,
            "num_heads": s.num_heads,
            "float_nodes": list(best.float_nodes),
            "float": [paths[n] for n in best.float_nodes],
        },
        "pareto": [
            {
                "method": t.candidate.method,
                "per_channel": t.candidate.per_channel,
                "n_float": len(t.candidate.float_nodes),
                "search_accuracy": t.metric,
                "b1_ms": t.latency_ms,
                "passed": t.passed,
            }
            for t in res.pareto
        ],
    }
    b = build(best)
    return Build("searched-int8", b.backend, b.model, b.precision, b.detail), info


def _progress(what: str):
    def show(done: int, total: int) -> None:
        print(f"\r{what}: {done}/{total}", end="\n" if done == total else "", flush=True)

    return show


def _tok(s: Setup):
    from workbench.data.tokenize import TextTokenizer

    return TextTokenizer(s.tokenizer_file, 128)


def _dynamic(fn, base: str, tag: str) -> Build:
    q = fn(base, per_channel=True)
    return Build(tag, "onnxruntime", str(q.path), "int8-dynamic", q.detail)


def logits_of(b: Build, s: Setup) -> np.ndarray:
    from workbench.evaluate.accuracy import predict_logits

    tok = _tok(s)
    if b.backend == "pytorch":
        from workbench.backends.pytorch.artifact import load_artifact
        from workbench.backends.pytorch.model import load_torch_classifier
        from workbench.backends.pytorch.runner import TorchRunner

        with TorchRunner(load_torch_classifier(load_artifact(b.model))) as r:
            return predict_logits(r, s.texts, tok)
    from workbench.backends.onnxruntime.runner import OrtRunner

    with OrtRunner(b.model, name=b.name) as r:
        return predict_logits(r, s.texts, tok)


def quality(b: Build, s: Setup, ref: np.ndarray, total_macs: dict[str, int]) -> dict:
    """Accuracy, agreement, fidelity and the paired-bootstrap drop vs ORT FP32; INT8 coverage."""
    from workbench.evaluate.fidelity import fidelity
    from workbench.gate import stats

    t0 = time.perf_counter()
    lg = logits_of(b, s)
    pred, base = lg.argmax(1), ref.argmax(1)
    ci = stats.paired_bootstrap(s.labels, base, pred, "accuracy", 2000, 0.95, 0)
    fid = fidelity(ref, lg, s.labels)
    row = {
        "build": b.name,
        "detail": b.detail,
        "accuracy": float(np.mean(pred == s.labels)),
        "agreement": fid.agreement,
        "acc_diff_pts": 100 * ci.diff,
        "acc_ci_pts": [100 * ci.low, 100 * ci.high],
        "kl_mean": fid.kl_mean,
        "max_abs_dp": fid.max_abs_dp,
        "flips": fid.flips,
        "false_pos_delta": [c.false_pos_delta for c in fid.per_class],
        "gate_accuracy_ok": bool(-ci.low <= 0.01 + 1e-12 and fid.agreement >= 0.97),
        "eval_seconds": time.perf_counter() - t0,
    }
    if b.backend == "onnxruntime":
        row.update(coverage(b.model, total_macs))
    return row


def coverage(model: str, total_macs: dict[str, int]) -> dict:
    """INT8 MatMul nodes and MAC share in ORT's optimized graph (MACs of the unfused model)."""
    import tempfile

    from workbench.backends.onnxruntime.build import QUANTIZED_MATMUL_OPS, int8_coverage
    from workbench.backends.onnxruntime.runner import OrtRunner

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "opt.onnx"
        OrtRunner(model, optimized_model_path=opt).close()
        cov = int8_coverage(opt)
        import onnx

        names = {
            n.name.removesuffix("_quant")  # ORT's dynamic quantizer renames the nodes it rewrites
            for n in onnx.load(str(opt), load_external_data=False).graph.node
            if n.op_type in QUANTIZED_MATMUL_OPS
        }
    int8 = sum(m for n, m in total_macs.items() if n in names)
    return {
        "int8_nodes": cov.quantized_matmul,
        "float_nodes": cov.float_matmul,
        "int8_mac_share": int8 / max(sum(total_macs.values()), 1),
    }


def latency(bs: list[Build], s: Setup, rounds: int, iterations: int, threads: int) -> dict:
    from workbench.evaluate.isolated import measure_isolated

    p50: dict[tuple[str, int], list[float]] = {}
    rss: dict[str, float] = {}
    for _ in range(rounds):
        for b in bs:
            prec = "fp32" if b.backend == "pytorch" else b.precision
            spec = isolated_spec(
                b.backend, b.model, s.tokenizer_file, prec, SHAPES,
                iterations=iterations, threads=threads,
            )  # fmt: skip
            out = measure_isolated(spec)
            rss[b.name] = max(rss.get(b.name, 0.0), out.peak_rss_mb)
            for lat in out.latency:
                p50.setdefault((b.name, lat.batch_size), []).append(lat.p50_ms)
    return {"p50": {f"{k[0]}@{k[1]}": statistics.median(v) for k, v in p50.items()}, "rss": rss}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 test samples, 2 rounds, 20 iters")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: does the script still run")
    ap.add_argument("--method", default="max")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--calib-n", type=int, default=512)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--search", action="store_true", help="add the searched build (slow)")
    ap.add_argument("--max-float", type=int, default=8)
    ap.add_argument("--search-methods", default="max,entropy")
    ap.add_argument("--ranking", choices=("task", "proxy"), default="task")
    ap.add_argument("--out", default=str(RESULTS / "cpu_fused_int8.json"))
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    before = load_average()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.smoke:  # CI: every step once on a few rows (numbers meaningless)
        args.rounds, args.iterations, args.n_test, args.calib_n = 1, 2, args.n_test or 40, 16
    if args.quick:
        args.rounds, args.iterations, args.n_test = 2, 20, args.n_test or 500
    from workbench.experiment.sensitivity import node_groups
    from workbench.provenance import collect_provenance
    from workbench.results.serde import to_dict

    s = setup(
        None,
        "text",
        "label",
        args.calib_n,
        args.n_test,
        max_train=SMOKE_TRAIN if args.smoke else None,
    )
    bs = builds(s, args.method)
    search_info = None
    if args.search:
        fused = next(b.model for b in bs if b.name == "ort-fused-fp32")
        methods = tuple(args.search_methods.split(","))
        searched, search_info = searched_build(s, fused, methods, args.max_float, args.ranking)
        bs.append(searched)
    macs = {g.onnx_node: g.macs for g in node_groups(s.onnx_path, 128)}
    ref = logits_of(next(b for b in bs if b.name == "ort-fp32"), s)
    rows = {b.name: quality(b, s, ref, macs) for b in bs}
    lat = latency(bs, s, args.rounds, args.iterations, args.threads)
    for name, row in rows.items():
        for batch, _ in SHAPES:
            ms = lat["p50"][f"{name}@{batch}"]
            row[f"p50_ms_b{batch}"] = ms
            row[f"x_ort_fp32_b{batch}"] = lat["p50"][f"ort-fp32@{batch}"] / ms
            row[f"x_torch_fp32_b{batch}"] = lat["p50"][f"torch-fp32@{batch}"] / ms
        row["peak_rss_mb"] = lat["rss"][name]
    _print(rows)
    result = {
        "benchmark": "cpu_fused_int8",
        "dataset": s.dataset,
        "n_gate_split": len(s.labels),
        "n_search_split": len(s.search_labels),
        "calibration": {"method": args.method, "n": args.calib_n, "set_sha256": s.calib_sha},
        "rounds": args.rounds,
        "iterations": args.iterations,
        "search": search_info,
        "rows": list(rows.values()),
        "provenance": to_dict(collect_provenance()),
    }
    save_result(args.out, result, before, force=args.force_overwrite)
    print(f"\nwrote {args.out}")


def _print(rows: dict[str, dict]) -> None:
    print(
        f"{'build':<22}{'acc':>7}{'agree':>7}{'Δacc pts [95% CI]':>24}{'KL':>9}{'int8 MAC':>9}"
        f"{'b1 ms':>8}{'×fp32':>7}{'×torch':>7}{'b8 ms':>8}{'×fp32':>7}{'gate':>6}"
    )
    for name, r in rows.items():
        ci = f"{r['acc_diff_pts']:+.2f} [{r['acc_ci_pts'][0]:+.2f},{r['acc_ci_pts'][1]:+.2f}]"
        share = f"{100 * r['int8_mac_share']:.0f}%" if "int8_mac_share" in r else "-"
        print(
            f"{name:<22}{r['accuracy']:>7.4f}{r['agreement']:>7.3f}{ci:>24}{r['kl_mean']:>9.2e}"
            f"{share:>9}{r['p50_ms_b1']:>8.1f}{r['x_ort_fp32_b1']:>7.2f}"
            f"{r['x_torch_fp32_b1']:>7.2f}{r['p50_ms_b8']:>8.1f}{r['x_ort_fp32_b8']:>7.2f}"
            f"{'ok' if r['gate_accuracy_ok'] else 'FAIL':>6}"
        )


if __name__ == "__main__":
    main()
