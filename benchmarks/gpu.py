"""The whole GPU matrix in one process: accuracy, latency, throughput, memory.

Two workloads: the default classifier (MiniLM-L6 mean-pool, fine-tuned here on the
GPU; accuracy on the Rotten Tomatoes test split + speed) and a BERT-base-sized
random ``BertForSequenceClassification`` (speed only). Writes a ``RunResult``
(``run.json``: BuildResult/LatencyResult records, the extras under ``config``)
that ``workbench.results.records.load_run`` reads and the report can include.

Example (the GPU machine; see benchmarks/README.md for getting the model there)::

    PYTHONPATH=. python3 benchmarks/gpu.py --out /tmp/gpu_run \\
        --base-model device_carry/all-MiniLM-L6-v2-fp16
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from workbench.errors import WorkbenchError

log = logging.getLogger("benchmarks.gpu")

BATCHES = (1, 8, 32, 128)
SEQS = (32, 128, 384)
FULL = [(b, s) for s in SEQS for b in BATCHES]
S128 = [(b, 128) for b in BATCHES]
SERVING_SHAPE = (32, 128)  # where memory per instance is measured

# (suffix, precision, cast, compile_mode, graphs, shapes) per workload.
MINILM_BUILDS: list[tuple[str, str, str, str | None, bool, list[tuple[int, int]]]] = [
    ("fp32", "fp32", "cast", None, False, S128),
    ("tf32", "tf32", "cast", None, False, S128),
    ("fp16", "fp16", "cast", None, False, FULL),
    ("bf16", "bf16", "cast", None, False, FULL),
    ("fp16-autocast", "fp16", "autocast", None, False, [(1, 128), (128, 128)]),
    ("fp16-graphs", "fp16", "cast", None, True, FULL),
    ("bf16-graphs", "bf16", "cast", None, True, S128),
]
BERT_BUILDS: list[tuple[str, str, str, str | None, bool, list[tuple[int, int]]]] = [
    ("fp32", "fp32", "cast", None, False, S128),
    ("tf32", "tf32", "cast", None, False, S128),
    ("fp16", "fp16", "cast", None, False, FULL),
    ("bf16", "bf16", "cast", None, False, FULL),
    ("fp16-autocast", "fp16", "autocast", None, False, [(1, 128), (128, 128)]),
    ("fp32-graphs", "fp32", "cast", None, True, [(1, 128)]),
    ("fp16-graphs", "fp16", "cast", None, True, FULL),
    ("bf16-graphs", "bf16", "cast", None, True, S128),
    ("fp16-compile-graphs", "fp16", "cast", "default", True, S128),
    ("bf16-compile-graphs", "bf16", "cast", "default", True, [(1, 128), (128, 128)]),
]
ACCURACY_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
STREAM_CASES = [  # (build, batch, seq, streams)
    ("bert-base-fp16-graphs", 1, 128, 2),
    ("bert-base-fp16-graphs", 1, 128, 4),
    ("bert-base-fp16-graphs", 8, 128, 4),
    ("bert-base-fp16-graphs", 128, 128, 2),
    ("bert-base-fp16", 8, 128, 4),
    ("bert-base-fp16", 128, 128, 2),
    ("minilm-cls-fp16-graphs", 8, 128, 4),
]
PROFILE_CASES = [  # (build, batch, seq): kernel-time breakdown
    ("bert-base-fp16-graphs", 1, 128),
    ("bert-base-fp16", 128, 128),
    ("bert-base-fp16-compile-graphs", 1, 128),
    ("bert-base-fp16-compile-graphs", 128, 128),
]


class Clock:
    """Wall-clock budget: optional work is skipped (and noted) once it runs out."""

    def __init__(self, budget_s: float) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def allows(self, what: str) -> bool:
        if self.elapsed() < self.budget_s:
            return True
        self.skipped.append(what)
        log.warning("time budget spent: skipping %s", what)
        return False


def fp32_base_model(src: Path) -> Path:
    """An FP32 copy of an encoder folder (the carried FP16 copy is upcast once, cached)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from workbench.fileio import cache_root, sha256_file

    weights = src / "model.safetensors"
    out = cache_root() / "base-fp32" / sha256_file(weights)[:16]
    if (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    sd = load_file(weights)
    if all(v.dtype != torch.float16 for v in sd.values()):
        return src
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, out / f.name)
    save_file(sd, out / "model.safetensors", metadata={"format": "pt"})
    return out


def gemm_and_copy_ceilings() -> dict[str, float]:
    """Measured FP16 GEMM rate (8192^3) and device-to-device copy bandwidth."""
    import torch

    def median_ms(fn: Callable[[], Any], n: int = 20) -> float:
        for _ in range(5):
            fn()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        out = []
        for _ in range(n):
            s.record()
            fn()
            e.record()
            e.synchronize()
            out.append(s.elapsed_time(e))
        return float(np.median(out))

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    gemm = 2 * 8192**3 / median_ms(lambda: a @ b) / 1e9
    x = torch.randn(256 * 2**20, device="cuda")
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / median_ms(lambda: y.copy_(x)) / 1e6
    torch.cuda.empty_cache()
    return {"fp16_gemm_tflops": round(gemm, 1), "d2d_copy_gb_per_s": round(copy, 1)}


def bert_base_model() -> Any:
    """BERT-base-sized random classifier (hidden 768, 12 layers, SDPA attention)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        num_labels=2,
        attn_implementation="sdpa",
    )
    return BertForSequenceClassification(cfg).eval()


def run_build(
    ctx: dict[str, Any],
    workload: str,
    spec: tuple[str, str, str, str | None, bool, list[tuple[int, int]]],
    make_model: Callable[[], Any],
    accuracy_fn: Callable[[Any], Any] | None = None,
) -> Any:
    """Latency (with/without copies) over the spec's shapes, peak memory and fit of one build."""
    import torch

    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.evaluate.gpu_timing import MIB, measure_gpu_latency, measure_memory
    from workbench.evaluate.memory import peak_rss_mb
    from workbench.results.records import BuildResult

    suffix, precision, cast, compile_mode, graphs, shapes = spec
    name = f"{workload}-{suffix}"
    clock: Clock = ctx["clock"]
    torch.cuda.empty_cache()
    base_mb = torch.cuda.memory_allocated() / MIB
    runner = TorchRunner(
        make_model(),
        name,
        precision,
        "cuda",
        cast=cast,
        compile_mode=compile_mode,
        cuda_graphs=graphs,
    )
    weights_mb = torch.cuda.memory_allocated() / MIB - base_mb
    latencies, peaks, notes = [], [], runner.describe()
    accuracy = accuracy_fn(runner) if accuracy_fn is not None else None
    for batch, seq in shapes:
        if not clock.allows(f"{name} b{batch} s{seq}"):
            notes.append(f"b{batch} s{seq} skipped: time budget")
            continue
        feed = ctx["feed"](batch, seq)
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for copies in (False, True):
            latencies.append(measure_gpu_latency(runner, feed, include_copies=copies))
        peaks.append(torch.cuda.max_memory_allocated() / MIB - base_mb)
        ctx["memory_by_shape"].append(
            {"build": name, "batch": batch, "seq": seq, "peak_allocated_mb": round(peaks[-1], 1)}
        )
        lat = latencies[-2]
        log.info(
            "%-28s b%-3d s%-3d p50 %8.3f ms p99 %8.3f ms %9.0f seq/s (%.1fs)",
            name,
            batch,
            seq,
            lat.p50_ms,
            lat.p99_ms,
            lat.throughput_seq_per_s,
            time.perf_counter() - t,
        )
        runner.reset_graphs()
    runner.reset_graphs()
    footprint = measure_memory(
        runner,
        ctx["feed"](*SERVING_SHAPE),
        ctx["budget_mb"],
        weights_mb,
        ctx["nvml_baseline"],
        base_mb,
    )
    runner.reset_graphs()
    ctx["memory_fit"].append(footprint)
    ctx["streams"] += stream_cases(ctx, runner)
    for prof_name, batch, seq in PROFILE_CASES:
        if prof_name == name and clock.allows(f"profile {name}"):
            ctx["profiles"].append(kernel_breakdown(runner, ctx["feed"](batch, seq)))
    runner.close()
    return BuildResult(
        name=name,
        backend="pytorch",
        precision=precision,
        device=ctx["gpu"],
        model_path=ctx["model_path"][workload],
        model_sha256=ctx["model_sha"][workload],
        accuracy=accuracy,
        latency=latencies,
        peak_rss_mb=peak_rss_mb(),
        peak_device_mem_mb=max([*peaks, footprint.peak_allocated_mb]),
        int8_coverage=None,
        notes=notes,
    )


def minilm_workload(ctx: dict[str, Any], args: argparse.Namespace) -> list[Any]:
    """Fine-tune the default classifier here, then accuracy + speed of each build."""
    from workbench.backends.pytorch.model import load_torch_classifier
    from workbench.backends.pytorch.prepare import prepare_classifier
    from workbench.data.datasets import load_rotten_tomatoes, make_splits, test_set_sha256
    from workbench.data.tokenize import TextTokenizer
    from workbench.evaluate.accuracy import (
        accuracy_result,
        predict_logits,
        save_predictions,
        save_test_samples,
    )
    from workbench.evaluate.latency import fixed_shape_feed
    from workbench.fileio import sha256_file

    t = time.perf_counter()
    splits = make_splits(load_rotten_tomatoes())
    base = fp32_base_model(Path(args.base_model)) if args.base_model else None
    art = prepare_classifier(splits, base_model=base)
    ctx["prepare"] = {"seconds": round(time.perf_counter() - t, 1), **art.training}
    log.info("classifier ready in %.1fs: %s", time.perf_counter() - t, art.training)
    texts, labels = list(splits.test["text"]), np.asarray(splits.test["label"])
    ctx["dataset"] = {"test_set_sha256": test_set_sha256(splits.test), "labels": art.labels}
    save_test_samples(ctx["run_dir"], texts, labels)
    tok128 = TextTokenizer.from_model_dir(art.encoder_dir, art.max_length)
    tok512 = TextTokenizer.from_model_dir(art.encoder_dir, 512)
    ctx["feed"] = lambda b, s: fixed_shape_feed(texts, tok512, b, s)
    ctx["model_path"]["minilm-cls"] = str(art.path)
    ctx["model_sha"]["minilm-cls"] = sha256_file(art.encoder_dir / "model.safetensors")
    reference: dict[str, np.ndarray] = {}

    def accuracy_of(runner: Any) -> Any:
        logits = predict_logits(runner, texts, tok128, batch_size=128)
        ref = reference.setdefault("logits", logits)  # fp32 runs first: the reference
        rel = save_predictions(ctx["run_dir"], runner.name, labels, logits)
        acc = accuracy_result(logits, labels, ref, len(art.labels), rel)
        log.info(
            "%s accuracy %.4f agreement %.4f max|dlogit| %.2e",
            runner.name,
            acc.accuracy,
            acc.agreement,
            acc.logit_max_abs_err,
        )
        return acc

    builds = []
    for spec in MINILM_BUILDS:
        acc = accuracy_of if spec[0] in ACCURACY_PRECISIONS else None
        builds.append(run_build(ctx, "minilm-cls", spec, lambda: load_torch_classifier(art), acc))
    return builds


def bert_workload(ctx: dict[str, Any]) -> list[Any]:
    """Speed only: the BERT-base-sized random classifier, same feeds as the classifier."""
    ctx["model_path"]["bert-base"] = "random BertForSequenceClassification(768 x 12, seed 0)"
    ctx["model_sha"]["bert-base"] = "random-seed0"
    builds = []
    for spec in BERT_BUILDS:
        if spec[3] is not None and not ctx["clock"].allows(f"bert-base-{spec[0]} (compile)"):
            continue
        builds.append(run_build(ctx, "bert-base", spec, bert_base_model))
    return builds


def stream_cases(ctx: dict[str, Any], runner: Any) -> list[dict[str, Any]]:
    """Multi-stream throughput (pinned buffers) against the single-stream loop, for one build."""
    from workbench.errors import ConfigError
    from workbench.evaluate.gpu_timing import measure_stream_throughput

    out = []
    for name, batch, seq, streams in STREAM_CASES:
        if name != runner.name or not ctx["clock"].allows(f"streams {name} b{batch}"):
            continue
        batches = max(4 * streams, 2048 // batch)
        try:
            tp = measure_stream_throughput(runner, ctx["feed"](batch, seq), streams, batches)
        except ConfigError as exc:  # a wrong result is recorded, not fatal to the whole run
            log.error("streams %s b%d x%d: %s", name, batch, streams, exc)
            out.append({"build": name, "batch_size": batch, "streams": streams, "error": str(exc)})
            continue
        finally:
            runner.reset_graphs()
        log.info(
            "streams %s b%d s%d x%d: %.0f -> %.0f seq/s (x%.2f)",
            name,
            batch,
            seq,
            streams,
            tp.single_stream_seq_per_s,
            tp.multi_stream_seq_per_s,
            tp.gain,
        )
        out.append({"build": name, **_as_dict(tp)})
    return out


KERNEL_CLASSES = (
    ("gemm", ("gemm", "nvjet", "cutlass", "sm90_xmma", "splitk", "triton_mm", "mm_")),
    ("attention", ("sdpa", "flash", "fmha", "attention", "efficient")),
    ("layernorm", ("layer_norm", "layernorm")),
    ("triton fused", ("triton_",)),
)


def kernel_breakdown(runner: Any, feed: Any, reps: int = 5) -> dict[str, Any]:
    """GPU time per forward by kernel class (torch.profiler), to show what stands in the way."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    batch, seq = feed["input_ids"].shape
    runner.prepare_shape(int(batch), int(seq))
    tensors = runner.to_device(runner.validate_feed(feed))
    runner.run_device(tensors)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            runner.run_device(tensors)
        torch.cuda.synchronize()
    classes: dict[str, float] = {}
    kernels = 0
    for evt in prof.key_averages():
        us = getattr(evt, "self_device_time_total", None)
        us = float(us if us is not None else getattr(evt, "self_cuda_time_total", 0.0))
        if us <= 0:
            continue
        kernels += int(evt.count)
        key = evt.key.lower()
        cls = next((c for c, pats in KERNEL_CLASSES if any(p in key for p in pats)), "other")
        classes[cls] = classes.get(cls, 0.0) + us / reps / 1e3
    runner.reset_graphs()
    return {
        "build": runner.name,
        "batch": int(batch),
        "seq": int(seq),
        "kernel_ms_per_forward": {k: round(v, 4) for k, v in sorted(classes.items())},
        "kernel_ms_total": round(sum(classes.values()), 4),
        "kernels_per_forward": kernels // reps,
    }


def _as_dict(obj: Any) -> Any:
    from workbench.results.serde import to_dict

    return to_dict(obj)


def p50(builds: list[Any], name: str, batch: int, seq: int, copies: bool = False) -> float | None:
    for b in builds:
        if b.name == name:
            for lat in b.latency:
                key = (lat.batch_size, lat.seq_len, lat.includes_host_device_copies)
                if key == (batch, seq, copies):
                    return float(lat.p50_ms)
    return None


def speedups(builds: list[Any]) -> list[dict[str, Any]]:
    """FP16/FP32, BF16/FP32 and TF32/FP32 speed-ups (eager, same run), per shape."""
    rows = []
    for workload in ("minilm-cls", "bert-base"):
        for batch, seq in FULL:
            base = p50(builds, f"{workload}-fp32", batch, seq)
            if base is None:
                continue
            row: dict[str, Any] = {"workload": workload, "batch": batch, "seq": seq}
            for p in ("tf32", "fp16", "bf16", "fp16-graphs", "fp16-compile-graphs"):
                other = p50(builds, f"{workload}-{p}", batch, seq)
                if other:
                    row[f"{p}_over_fp32"] = round(base / other, 2)
            rows.append(row)
    return rows


def targets(builds: list[Any]) -> dict[str, Any]:
    """Best BERT-base build at seq 128 against the issue's targets."""
    best_b1: tuple[float, str] | None = None
    best_b128: tuple[float, str] | None = None
    for b in builds:
        if not b.name.startswith("bert-base"):
            continue
        for lat in b.latency:
            if lat.seq_len != 128 or lat.includes_host_device_copies:
                continue
            if lat.batch_size == 1 and (best_b1 is None or lat.p50_ms < best_b1[0]):
                best_b1 = (lat.p50_ms, b.name)
            tp = lat.throughput_seq_per_s
            if lat.batch_size == 128 and (best_b128 is None or tp > best_b128[0]):
                best_b128 = (tp, b.name)
    out: dict[str, Any] = {"b1_target_ms": 0.5, "b128_target_seq_per_s": 25000}
    if best_b1:
        out.update(
            b1_best_ms=round(best_b1[0], 4), b1_best_build=best_b1[1], b1_met=best_b1[0] <= 0.5
        )
    if best_b128:
        out.update(
            b128_best_seq_per_s=round(best_b128[0]),
            b128_best_build=best_b128[1],
            b128_met=best_b128[0] >= 25000,
        )
    return out


def summary_table(run: Any, memory_fit: list[Any]) -> str:
    """Markdown table: build x batch x seq -> p50/p99 ms, seq/s, peak GiB, accuracy."""
    fit = {m.build: m for m in memory_fit}
    lines = [
        f"GPU: {run.provenance.gpu}",
        "",
        "| build | batch | seq | p50 ms | p99 ms | p50 ms +copies | seq/s | peak GiB | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in run.builds:
        acc = f"{b.accuracy.accuracy:.4f}" if b.accuracy else "-"
        by_shape: dict[tuple[int, int], dict[bool, Any]] = {}
        for lat in b.latency:
            by_shape.setdefault((lat.batch_size, lat.seq_len), {})[
                lat.includes_host_device_copies
            ] = lat
        for (batch, seq), pair in by_shape.items():
            d, c = pair.get(False), pair.get(True)
            if d is None:
                continue
            cp = f"{c.p50_ms:.3f}" if c else "-"
            lines.append(
                f"| {b.name} | {batch} | {seq} | {d.p50_ms:.3f} | {d.p99_ms:.3f} | {cp} | "
                f"{d.throughput_seq_per_s:,.0f} | {gib(b.peak_device_mem_mb)} | {acc} |"
            )
    lines += [
        "",
        "| build | weights MiB | peak MiB (b32 s128) | context MiB | fit budget |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, m in fit.items():
        ctx_mb = f"{m.context_mb:.0f}" if m.context_mb is not None else "-"
        lines.append(
            f"| {name} | {m.weights_mb:.0f} | {m.peak_allocated_mb:.0f} | {ctx_mb} | "
            f"{m.instances_same_process} in-process / {m.instances_separate_processes} processes "
            f"in {m.budget_mb / 1024:.0f} GiB |"
        )
    return "\n".join(lines)


def gib(mb: float | None) -> str:
    return f"{mb / 1024:.2f}" if mb is not None else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run directory to write run.json into")
    parser.add_argument("--base-model", help="encoder folder (default: the shipped MiniLM)")
    parser.add_argument("--budget-gib", type=float, default=16.0, help="memory budget for fit")
    parser.add_argument("--time-budget-s", type=float, default=420.0)
    parser.add_argument("--skip-classifier", action="store_true")
    parser.add_argument("--skip-bert", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        return run(args)
    except WorkbenchError as exc:
        log.error("%s", exc)
        return exc.exit_code


def run(args: argparse.Namespace) -> int:
    import torch

    from workbench.backends.onnxruntime.cuda import ort_cuda_unavailable_reason
    from workbench.evaluate.gpu_timing import MIB, nvml_used_mb
    from workbench.provenance import collect_provenance
    from workbench.results.records import SCHEMA_VERSION, RunResult, save_run

    if not torch.cuda.is_available():
        log.error("no CUDA GPU visible: this benchmark needs one")
        return 3
    nvml_baseline = nvml_used_mb()
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name()
    clock = Clock(args.time_budget_s)
    ctx: dict[str, Any] = {
        "clock": clock,
        "gpu": gpu,
        "run_dir": run_dir,
        "budget_mb": args.budget_gib * 1024,
        "nvml_baseline": nvml_baseline,
        "memory_by_shape": [],
        "memory_fit": [],
        "streams": [],
        "profiles": [],
        "model_path": {},
        "model_sha": {},
        "dataset": {},
        "prepare": {},
    }
    ceilings = gemm_and_copy_ceilings()
    log.info("%s: %s", gpu, ceilings)
    builds = [] if args.skip_classifier else minilm_workload(ctx, args)
    if "feed" not in ctx:  # BERT-only run: random-free feeds from the shipped tokenizer
        raise WorkbenchError("--skip-classifier needs the classifier's tokenizer; drop it")
    if not args.skip_bert:
        builds += bert_workload(ctx)
    streams, profiles = ctx["streams"], ctx["profiles"]
    result = RunResult(
        schema_version=SCHEMA_VERSION,
        run_id=f"gpu-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
        dataset="rotten_tomatoes",
        test_set_sha256=ctx["dataset"].get("test_set_sha256", ""),
        labels=ctx["dataset"].get("labels", []),
        reference_build="minilm-cls-fp32",
        builds=builds,
        calibration=None,
        provenance=collect_provenance({"split": 0, "prepare": 0, "bert_base": 0}, gpu=gpu),
        config={
            "kind": "gpu-benchmark",
            "card": gpu,
            "capability": list(torch.cuda.get_device_capability()),
            "total_memory_gib": round(
                torch.cuda.get_device_properties(0).total_memory / MIB / 1024, 1
            ),
            "ceilings": ceilings,
            "prepare": ctx["prepare"],
            "speedups": speedups(builds),
            "targets": targets(builds),
            "stream_throughput": streams,
            "kernel_profiles": profiles,
            "memory_fit": [_as_dict(m) for m in ctx["memory_fit"]],
            "memory_by_shape": ctx["memory_by_shape"],
            "budget_gib": args.budget_gib,
            "skipped": {
                "time_budget": clock.skipped,
                "ort-cuda": ort_cuda_unavailable_reason() or "ran",
            },
            "wall_s": round(clock.elapsed(), 1),
        },
    )
    save_run(result, run_dir)
    table = summary_table(result, ctx["memory_fit"])
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    for key in ("speedups", "targets", "stream_throughput", "kernel_profiles", "skipped"):
        print(f"\n{key}: {result.config[key]}")
    print(f"\nwall {clock.elapsed():.0f}s; wrote {run_dir / 'run.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
