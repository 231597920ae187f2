"""FP32 vs fused vs INT8 builds of the default classifier on this CPU, side by side in one run.

Builds: PyTorch FP32, ORT FP32, ORT FP32 fused (MultiHeadAttention + BiasGelu,
workbench.backends.onnxruntime.fusion), the workbench's static Q/DQ INT8 (per-channel and
per-tensor weights) as shipped (shared Q/DQ) and with a private Q/DQ per consumer, the same on
the fused graph, and ORT dynamic INT8 (plain and fused). For each: accuracy, agreement and
probability KL against ORT FP32 on the test split, the paired-bootstrap accuracy drop (95% CI),
INT8 MatMul coverage (nodes and MAC share at seq 128, read from ORT's optimized graph) and
latency at batch 1 and 8 x seq 128. Latency: one child process per build and shape set,
builds interleaved over rounds, the median of the rounds' p50 reported. Every INT8 build is
also judged on the calibration-pool rows that no calibration set, search or test split used
("fresh" rows): a check no choice of build has seen. Prints tables and writes JSON.

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
    from _search_runs import (
        judge_row,
        load_search,
        registry_builds,
        search_default,
        search_halves,
        search_second_model,
    )
    from _timing import isolated_spec
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result
    from benchmarks._search_runs import (
        judge_row,
        load_search,
        registry_builds,
        search_default,
        search_halves,
        search_second_model,
    )
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
    fresh_texts: list  # calibration-pool rows outside the calibration set: never used
    fresh_labels: np.ndarray


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
    test = subset(splits.test, n_test)
    if halves:  # exactly the halves `workbench search` makes: its gate half is ours
        search_idx, gate_idx = search_halves(len(test))
        search, gate = test.select(search_idx), test.select(gate_idx)
    else:
        search, gate = test.select([]), test
    cfg = json.loads((Path(art.encoder_dir) / "config.json").read_text())
    used = set(cs.dataset["text"]) | set(test["text"])
    fresh = [i for i, t in enumerate(splits.calibration_pool["text"]) if t not in used]
    fresh = fresh[:n_test] if n_test else fresh  # --smoke / --n-test: as small as the test
    pool = splits.calibration_pool.select(fresh)
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
        list(pool["text"]),
        np.asarray(pool["label"]),
    )


def qdq_build(
    s: Setup, base: str, method: str, per_channel: bool, private: bool, tag: str, exclude=()
):
    """Calibrate ``base`` with ``method`` and write its Q/DQ model (cached by name in the run)."""
    from workbench.backends.onnxruntime.fusion import unshare_dequantize
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate
    from workbench.fileio import cache_root, sha256_json

    key = sha256_json([base, method, per_channel, private, s.calib_sha, list(exclude)])[:16]
    out = cache_root() / "bench-fused" / key / "model.onnx"
    if not out.is_file():
        table = calibrate(
            base,
            s.calib_feeds,
            method,
            calibration_set_sha256=s.calib_sha,
            open_runner=open_ort_runner,
        )
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
    """PyTorch and ORT FP32, then every ORT build a user gets from ``[[build]]`` tables (the
    backend registry: ``ort-int8-searched`` is the demo's gated build; ``-fused`` builds
    run on the fused graph), static INT8 from the workbench's own ``method`` table."""
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.table import calibrate
    from workbench.fileio import cache_root, sha256_json

    key = sha256_json([s.onnx_path, method, s.calib_sha])[:16]
    table_file = cache_root() / "bench-fused" / key / f"{method}.json"
    if not table_file.is_file():
        table = calibrate(
            s.onnx_path,
            s.calib_feeds,
            method,
            calibration_set_sha256=s.calib_sha,
            open_runner=open_ort_runner,
        )
        table.save(table_file)
    out = [
        Build("torch-fp32", "pytorch", s.model_dir, "fp32", "PyTorch eager FP32"),
        Build("ort-fp32", "onnxruntime", s.onnx_path, "fp32", "TorchScript export"),
    ]
    feeds = s.calib_feeds
    made = registry_builds(
        s.model_dir, s.onnx_path, str(table_file), s.tokenizer_file, lambda: iter(feeds)
    )
    return out + [Build(n, "onnxruntime", m, p, d) for n, m, p, d in made]


def candidates(specs: list[str]) -> list[Build]:
    """``--candidate NAME=MODEL.onnx`` rows: a build found elsewhere, judged and timed here."""
    out = []
    for spec in specs:
        name, _, model = spec.partition("=")
        if not name or not Path(model).is_file():
            raise SystemExit(f"--candidate {spec!r}: pass NAME=PATH to an existing ONNX model")
        out.append(Build(name, "onnxruntime", model, "int8", f"candidate {Path(model).name}"))
    return out


def searched(bs: list[Build], s: Setup, args) -> dict | None:
    """``workbench search`` on the demo (run here, or a finished one): its choice joins ``bs``.
    Its gate half is this benchmark's gate split (same halving), so the row is selection-free."""
    from workbench.fileio import cache_root

    if not (args.search or args.search_dir):
        return None
    folder = Path(args.search_dir or cache_root() / "bench-fused" / "search")
    if args.search_dir and (folder / "search.json").is_file():
        info, model = load_search(folder)
    else:
        info, model = search_default(folder, args.max_float)
    info["same_gate_half"] = info["n_gate"] == len(s.labels)
    if model is not None:
        kind = info["best"]["kind"]
        bs.append(Build("searched", "onnxruntime", str(model), f"int8-{kind}", info["label"]))
    return info


def second_model(folder: str, max_float: int) -> dict:
    """The search on a tiny BERT trained here (or its finished search in ``folder``)."""
    done = Path(folder) / "search"
    if (done / "search.json").is_file():
        return load_search(done)[0]
    return search_second_model(Path(folder), max_float)


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
    from workbench.results import stats

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
    d = judge_row(s.labels, ref, lg, _policy())  # the gate's one judge, the demo's policy
    row["verdict"], row["verdict_reasons"] = d.verdict, list(d.reasons)
    if b.backend == "onnxruntime":
        row.update(coverage(b.model, total_macs))
    return row


def fresh_check(b: Build, s: Setup, ref: np.ndarray) -> dict:
    """The gate's judge on the fresh calibration-pool rows against ORT FP32 there."""
    lg = logits_of(b, _fresh(s))
    d = judge_row(s.fresh_labels, ref, lg, _policy())
    pred, base = lg.argmax(1), ref.argmax(1)
    return {
        "n": len(s.fresh_labels),
        "disagreements": int((pred != base).sum()),
        "agreement": float(np.mean(pred == base)),
        "acc_diff_pts": 100
        * float(np.mean(pred == s.fresh_labels) - np.mean(base == s.fresh_labels)),
        "verdict": d.verdict,
        "verdict_reasons": list(d.reasons),
    }


def _policy():
    from workbench.experiment.spec import load_experiment, shipped_experiment

    return load_experiment(shipped_experiment("demo")).gate.policy


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
    for name in [n for n in names if n.endswith("/attention/self/Attention")]:  # QAttention
        names |= {name.replace("/Attention", f"/{p}/MatMul") for p in ("query", "key", "value")}
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
    ap.add_argument("--search", action="store_true", help="add `workbench search`'s choice (slow)")
    ap.add_argument("--search-dir", help="reuse a finished `workbench search --shipped demo`")
    ap.add_argument("--second-model", help="folder: train a tiny BERT there and search it too")
    ap.add_argument("--max-float", type=int, default=4)
    ap.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=MODEL.onnx",
        help="another ONNX Runtime INT8 model of the default classifier to judge and time here",
    )
    ap.add_argument("--out", default=str(RESULTS / "cpu_fused_int8.json"))
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    before = load_average()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.smoke:  # CI: every step once on a few rows (numbers meaningless)
        args.rounds, args.iterations, args.n_test, args.calib_n = 1, 2, args.n_test or 40, 16
    if args.quick:
        args.rounds, args.iterations, args.n_test = 2, 20, args.n_test or 500
    from workbench.backends.onnxruntime.runner import CPU_DISABLED_OPTIMIZERS
    from workbench.evaluate.sensitivity import node_groups
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
    bs = builds(s, args.method) + candidates(args.candidate)
    search_info = searched(bs, s, args)
    second = second_model(args.second_model, args.max_float) if args.second_model else None
    macs = {g.onnx_node: g.macs for g in node_groups(s.onnx_path, 128)}
    ref = logits_of(next(b for b in bs if b.name == "ort-fp32"), s)
    rows = {b.name: quality(b, s, ref, macs) for b in bs}
    fresh_ref = logits_of(next(b for b in bs if b.name == "ort-fp32"), _fresh(s))
    for b in (b for b in bs if b.precision.startswith("int8")):
        rows[b.name]["fresh"] = fresh_check(b, s, fresh_ref)
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
        "second_model": second,
        "rows": list(rows.values()),
        # every ORT CPU session here (FP32 reference included) ran without these optimizers
        "ort_cpu_disabled_optimizers": list(CPU_DISABLED_OPTIMIZERS),
        "provenance": to_dict(collect_provenance()),
    }
    save_result(args.out, result, before, force=args.force_overwrite)
    print(f"\nwrote {args.out}")


def _fresh(s: Setup) -> Setup:
    from dataclasses import replace

    return replace(s, texts=s.fresh_texts, labels=s.fresh_labels)


def _print(rows: dict[str, dict]) -> None:
    print(
        f"{'build':<22}{'acc':>7}{'agree':>7}{'Δacc pts [95% CI]':>24}{'KL':>9}{'int8 MAC':>9}"
        f"{'b1 ms':>8}{'×fp32':>7}{'×torch':>7}{'b8 ms':>8}{'×fp32':>7}{'judge':>14}"
    )
    for name, r in rows.items():
        ci = f"{r['acc_diff_pts']:+.2f} [{r['acc_ci_pts'][0]:+.2f},{r['acc_ci_pts'][1]:+.2f}]"
        share = f"{100 * r['int8_mac_share']:.0f}%" if "int8_mac_share" in r else "-"
        print(
            f"{name:<22}{r['accuracy']:>7.4f}{r['agreement']:>7.3f}{ci:>24}{r['kl_mean']:>9.2e}"
            f"{share:>9}{r['p50_ms_b1']:>8.1f}{r['x_ort_fp32_b1']:>7.2f}"
            f"{r['x_torch_fp32_b1']:>7.2f}{r['p50_ms_b8']:>8.1f}{r['x_ort_fp32_b8']:>7.2f}"
            f"{r['verdict']:>14}"
        )
    fresh = {n: r["fresh"] for n, r in rows.items() if "fresh" in r}
    if fresh:
        n = next(iter(fresh.values()))["n"]
        print(f"\non {n} calibration-pool rows no calibration, search or test split used:")
        for name, f in fresh.items():
            print(
                f"{name:<22} agree {f['agreement']:.4f} ({f['disagreements']} differ)  "
                f"Δacc {f['acc_diff_pts']:+.2f} pts  {f['verdict']}"
            )


if __name__ == "__main__":
    main()
