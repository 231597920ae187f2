"""Peak memory and wall time of our streamed calibration vs ONNX Runtime's calibrator.

Models: the default encoder (all-MiniLM-L6-v2) and a BERT-base-sized encoder with random
weights (hidden 768, 12 layers), each as a MeanPoolClassifier with a random head,
exported to ONNX. Data: Rotten Tomatoes reviews joined into texts of >= ``--seq``
tokens, so every sample is exactly ``--seq`` tokens (no padding: both calibrators see
the same activations). Each measurement runs in its own child process (true peak
RSS); ONNX Runtime's Entropy calibrator (``create_calibrator``, 2048 bins) runs under
a memory cap enforced by polling RSS, so running out of memory is recorded, not fatal.
Our throughput is compared with plain FP32 inference of the same model on the same
batches (both timed from session creation on; plain inference on min(N, 512) samples).
Peak RSS is the child's VmHWM (ru_maxrss would carry the parent's peak over exec).
Prints a table and writes JSON.

    python benchmarks/calibration.py [--ns 128,512,2048] [--seq 128] [--ort-cap-gb 6]
                                     [--out benchmarks/results/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result

BATCH = 16
MODELS = ("minilm", "bert-base")


def _artifact(kind: str, work: Path):  # type: ignore[no-untyped-def]
    """A prepared classifier (random head) on the MiniLM encoder or a random BERT-base."""
    from workbench.backends.pytorch.artifact import ENCODER_DIR, HEAD_FILE, ModelArtifact
    from workbench.backends.pytorch.prepare import default_base_model

    out = work / kind
    enc = out / ENCODER_DIR
    src = default_base_model()
    if not (out / "workbench_model.json").is_file():
        if kind == "minilm":
            shutil.copytree(src, enc, dirs_exist_ok=True)
            hidden = 384
        else:
            import torch
            from transformers import BertConfig, BertModel

            torch.manual_seed(0)
            cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=3072, vocab_size=30522)  # fmt: skip
            BertModel(cfg).eval().save_pretrained(enc)
            for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
                shutil.copy(src / name, enc / name)
            hidden = 768
        rng = np.random.default_rng(0)
        np.savez(out / HEAD_FILE, weight=rng.normal(0, 1, (2, hidden)).astype(np.float32),
                 bias=np.zeros(2, np.float32))  # fmt: skip
        ModelArtifact(out, ["rotten", "fresh"], 128, "mean", True, f"bench-{kind}", "random",
                      {}).save_meta()  # fmt: skip
    from workbench.backends.pytorch.artifact import load_artifact

    return load_artifact(out)


def _texts(n: int, seq: int, tok) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` texts of at least ``seq`` tokens, made of consecutive reviews."""
    from workbench.data.datasets import load_rotten_tomatoes

    reviews = load_rotten_tomatoes().dataset["text"]
    out, cur, i = [], [], 0
    while len(out) < n:
        cur.append(reviews[i % len(reviews)])
        i += 1
        if len(tok.token_ids([" ".join(cur)])[0]) >= seq:
            out.append(f"{len(out)} " + " ".join(cur))
            cur = []
    return out


def _write_tokens(model_dir: Path, n: int, seq: int, path: Path) -> Path:
    """Tokenize ``n`` texts of ``seq`` tokens once, in the parent (workers only load arrays)."""
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(model_dir, seq)
    feed = tok.encode(_texts(n, seq, tok), pad_to=seq)
    assert int(feed["attention_mask"].sum()) == n * seq  # every sample exactly seq tokens
    np.savez(path, **feed)
    return path


def _feeds(tokens: str, n: int) -> list[dict[str, np.ndarray]]:
    with np.load(tokens) as data:  # each data[k] re-reads the member: read each once
        arrays = {k: data[k][:n].copy() for k in data.files}
    return [{k: v[i : i + BATCH].copy() for k, v in arrays.items()} for i in range(0, n, BATCH)]


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM): ru_maxrss would carry the parent's peak over exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this (child) process: prints a JSON line."""
    feeds = _feeds(args.tokens, args.n)
    setup_mb = _peak_mb()
    t0 = time.perf_counter_ns()
    extra: dict[str, Any] = {}
    if args.worker == "ours":
        from workbench.backends.onnxruntime.runner import open_ort_runner
        from workbench.calibration.stats import collect_statistics
        from workbench.calibration.table import tables_from_stats

        stats = collect_statistics(args.onnx, iter(feeds), open_runner=open_ort_runner)
        extra["statistics_s"] = (time.perf_counter_ns() - t0) / 1e9
        tables = tables_from_stats(stats, ["entropy"], "")
        n_tensors = len(tables["entropy"].amax)
    elif args.worker == "ort":
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

        class Reader:
            def __init__(self) -> None:
                self.it = iter(feeds)

            def get_next(self):  # type: ignore[no-untyped-def]
                return next(self.it, None)

        aug = Path(args.tmp) / f"aug-{os.getpid()}.onnx"
        cal = create_calibrator(args.onnx, ["MatMul", "Gemm"], augmented_model_path=str(aug),
                                calibrate_method=CalibrationMethod.Entropy,
                                extra_options={"num_bins": 2048})  # fmt: skip
        cal.collect_data(Reader())
        n_tensors = len(cal.compute_data().data)
    else:  # plain FP32 inference on the same batches
        from workbench.backends.onnxruntime.runner import OrtRunner

        with OrtRunner(args.onnx) as r:
            for f in feeds:
                r.infer(f)
        n_tensors = 0
    wall = (time.perf_counter_ns() - t0) / 1e9
    return {"wall_s": wall, "peak_rss_mb": _peak_mb(), "setup_rss_mb": setup_mb,
            "tokens": args.n * args.seq, "n_tensors": n_tensors, **extra}  # fmt: skip


def _spawn(kind: str, onnx: str, tokens: Path, n: int, seq: int, cap_gb: float | None,
           timeout_s: float, tmp: Path) -> dict[str, Any]:  # fmt: skip
    import psutil

    cmd = [sys.executable, __file__, "--worker", kind, "--onnx", onnx, "--tokens",
           str(tokens), "--n", str(n), "--seq", str(seq), "--tmp", str(tmp)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    peak, status = 0.0, "ok"
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss)
        if cap_gb is not None and rss > cap_gb * 1024:
            status = f"killed at {cap_gb:g} GiB cap"
        elif time.perf_counter() - t0 > timeout_s:
            status = f"killed after {timeout_s:.0f} s timeout"
        if status != "ok":
            proc.kill()
            break
        time.sleep(0.1)
    out, _ = proc.communicate()
    elapsed = time.perf_counter() - t0
    if status == "ok" and proc.returncode == 0 and out.strip():
        res = json.loads(out.strip().splitlines()[-1])
        return {"status": "ok", **res}
    if status == "ok":
        status = f"failed (exit {proc.returncode})"
    return {"status": status, "wall_s": elapsed, "peak_rss_mb": peak}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=["ours", "ort", "plain"])
    p.add_argument("--onnx")
    p.add_argument("--tokens", help="(worker) .npz of token arrays")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--ns", default="128,512,2048")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--bert-base-seq", type=int, help="shorter sequences for BERT-base (time)")
    p.add_argument("--ort-ns", default="128,512", help="N for ORT (larger N only if these fit)")
    p.add_argument("--ort-cap-gb", type=float, default=6.0)
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--work", default=None, help="where models are built (default: cache)")
    p.add_argument("--out", default="benchmarks/results/calibration.json")
    add_overwrite_flag(p)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    import tempfile

    from workbench.backends.onnxruntime.export import export_onnx
    from workbench.fileio import cache_root
    from workbench.provenance import collect_provenance

    before = load_average()
    work = Path(args.work) if args.work else cache_root() / "bench-calibration"
    ns = [int(x) for x in args.ns.split(",")]
    ort_ns = [int(x) for x in args.ort_ns.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models.split(","):
            art = _artifact(kind, work)
            onnx = export_onnx(art).onnx_path
            seq = args.bert_base_seq if kind == "bert-base" and args.bert_base_seq else args.seq
            enc = _write_tokens(art.encoder_dir, max(ns), seq, Path(tmp) / f"{kind}.npz")
            n_plain = min(max(ns), 512)
            plain = _spawn("plain", onnx, enc, n_plain, seq, None, args.timeout_s, Path(tmp))
            rows.append(
                {"model": kind, "tool": "fp32-inference", "n": n_plain, "seq": seq, **plain}
            )
            _print(rows[-1])
            for n in ns:
                res = _spawn("ours", onnx, enc, n, seq, None, args.timeout_s, Path(tmp))
                rows.append({"model": kind, "tool": "workbench", "n": n, "seq": seq, **res})
                _print(rows[-1])
            ort_failed = False
            for n in ns:
                if n not in ort_ns and (ort_failed or n > max(ort_ns)):
                    status = "skipped (smaller N already over the cap)" if ort_failed else "skipped"
                    row = {"model": kind, "tool": "onnxruntime", "n": n, "seq": seq}
                    rows.append({**row, "status": status, "wall_s": None, "peak_rss_mb": None})
                    _print(rows[-1])
                    continue
                res = _spawn("ort", onnx, enc, n, seq, args.ort_cap_gb, args.timeout_s, Path(tmp))
                ort_failed = ort_failed or res["status"] != "ok"
                rows.append({"model": kind, "tool": "onnxruntime", "n": n, "seq": seq, **res})
                _print(rows[-1])
    summary = _summary(rows)
    print(json.dumps(summary, indent=2))
    out = {"rows": rows, "summary": summary, "ort_cap_gb": args.ort_cap_gb, "batch": BATCH,
           "provenance": collect_provenance().__dict__}  # fmt: skip
    save_result(args.out, out, before, force=args.force_overwrite)
    print(f"written: {args.out}")


def _print(r: dict[str, Any]) -> None:
    wall = f"{r['wall_s']:.1f} s" if r.get("wall_s") is not None else "-"
    rss = f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") is not None else "-"
    tps = f"{r['tokens'] / r['wall_s']:.0f} tok/s" if r.get("tokens") and r.get("wall_s") else ""
    print(f"{r['model']:<10} {r['tool']:<15} N={r['n']:<5} seq={r['seq']:<4} {wall:>9} "
          f"{rss:>9} {tps:>12}  {r['status']}", flush=True)  # fmt: skip


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in {r["model"] for r in rows}:
        ok = [r for r in rows if r["model"] == kind and r["status"] == "ok"]
        ours = [r for r in ok if r["tool"] == "workbench"]
        plain = [r for r in ok if r["tool"] == "fp32-inference"]
        if not ours:
            continue
        rss = [r["peak_rss_mb"] for r in ours]
        entry = {"peak_rss_mb_by_n": {r["n"]: r["peak_rss_mb"] for r in ours},
                 "rss_spread_max_over_min": max(rss) / min(rss) - 1.0}  # fmt: skip
        if plain:
            plain_tps = plain[0]["tokens"] / plain[0]["wall_s"]
            entry["plain_fp32_tokens_per_s"] = plain_tps
            entry["statistics_throughput_vs_fp32"] = {
                r["n"]: (r["tokens"] / r["statistics_s"]) / plain_tps for r in ours
            }
            entry["total_throughput_vs_fp32"] = {
                r["n"]: (r["tokens"] / r["wall_s"]) / plain_tps for r in ours
            }
        out[kind] = entry
    return out


if __name__ == "__main__":
    main()
