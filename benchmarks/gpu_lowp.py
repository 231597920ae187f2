"""FP16 vs FP8 / INT8 builds of BERT-base (seq 128) on one GPU: latency, throughput, agreement.

Random-weight ``BertForSequenceClassification`` (transformers' default BertConfig =
BERT-base, 2 labels). The 72 encoder Linears are replaced by ``QuantLinear``
(workbench.backends.pytorch.lowp) with activation ranges from a max calibration
over random token batches (forward hooks); pooler and classifier stay FP16. Every
build runs FP16 around the quantized matmuls, ``torch.compile`` per encoder layer
(regional: one compile serves all 12 layers) unless noted, and one CUDA graph per
batch size. Timing: CUDA events around single graph replays, inputs already on the
GPU, median of many. Agreement: argmax vs the FP32 model on 1,024 padded random
sequences (random weights: a fidelity check, not accuracy).

Example (on the GPU machine; docs/gpu-lowp.md has the whole recipe)::

    PYTHONPATH=. python3 benchmarks/gpu_lowp.py --out /tmp/gpu_lowp.json
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result

log = logging.getLogger("benchmarks.gpu_lowp")

SEQ = 128
BATCHES = (1, 128)
N_AGREE = 1024  # agreement samples (8 batches of 128)
KEEP_FLOAT = ("bert.pooler.*", "classifier")
SERVE_BATCH = (
    32  # models-per-GPU: batch of each instance  # only the 72 encoder Linears are quantized
)


@dataclass(frozen=True)
class Build:
    """One build of the matrix: precision of the encoder Linears and how it is compiled."""

    name: str
    precision: str  # "fp16" | "fp8" | "int8-static" | "int8-dynamic"
    regional: bool = True  # compile each BertLayer (True) or the whole model (False)
    fast_accum: bool = False  # FP8 only: _scaled_mm's fast (lower-precision) accumulation
    per_channel: bool = True  # per-output-channel weight scales (False: one per Linear)
    inductor: dict[str, Any] = field(default_factory=dict)  # torch._inductor.config patches
    fused: bool = False  # encoder on workbench's fused Triton kernels (kernels.bert), no compile

    @property
    def kernels(self) -> str:
        """Whose kernels ran the encoder (the report's label for this build)."""
        if self.fused:
            return "PyTorch + workbench Triton kernels"
        if self.inductor.get("max_autotune_gemm_backends") == "TRITON":
            return "PyTorch + Inductor Triton GEMMs"
        return "PyTorch + cuBLAS"


BUILDS = [
    Build("fp16-compile-graphs", "fp16"),
    Build("fp8-static", "fp8"),
    Build("fp8-static-fastaccum", "fp8", fast_accum=True),
    Build("fp8-static-pertensor-w-fastaccum", "fp8", fast_accum=True, per_channel=False),
    Build("int8-static", "int8-static"),
    Build(
        "int8-static-triton-epilogue", "int8-static", inductor={"force_fuse_int_mm_with_mul": True}
    ),
    Build("int8-dynamic", "int8-dynamic"),
    Build("fp16-compile-full-graphs", "fp16", regional=False),
    Build("fp8-static-full", "fp8", regional=False),
    Build("fp8-pertensor-w-fastaccum-full", "fp8", False, True, False),
    Build(
        "int8-static-triton-autotune",
        "int8-static",
        inductor={
            "max_autotune_gemm": True,
            "max_autotune_gemm_backends": "TRITON",
            "force_fuse_int_mm_with_mul": True,
        },
    ),
]
FUSED_BUILDS = [
    Build("fp8-fused-triton", "fp8", fused=True),
    Build("int8-fused-triton", "int8-static", fused=True),
]
BUILDS += FUSED_BUILDS
PROFILED = (
    "fp16-compile-graphs",
    "fp16-compile-full-graphs",
    "fp8-pertensor-w-fastaccum-full",
    "int8-static",
    "fp8-fused-triton",
    "int8-fused-triton",
)
CATEGORIES = (
    "gemm",
    "attention",
    "fused element-wise (Inductor)",
    "quantize/LayerNorm (workbench Triton)",
    "other",
)


def random_batch(torch: Any, batch: int, seed: int, pad: bool) -> dict[str, Any]:
    """Random token ids (never zeros) on the GPU; with ``pad`` rows get random true lengths."""
    g = np.random.default_rng(seed)
    ids = g.integers(1000, 30000, size=(batch, SEQ), dtype=np.int64)
    mask = np.ones((batch, SEQ), dtype=np.int64)
    if pad:
        for i, n in enumerate(g.integers(SEQ // 4, SEQ + 1, size=batch)):
            mask[i, n:] = 0
            ids[i, n:] = 0
    return {
        "input_ids": torch.from_numpy(ids).cuda(),
        "attention_mask": torch.from_numpy(mask).cuda(),
        "token_type_ids": torch.zeros_like(torch.from_numpy(ids)).cuda(),
    }


def base_model(torch: Any) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(num_labels=2, attn_implementation="sdpa")
    return BertForSequenceClassification(cfg).eval().cuda()


def calibrate_max(torch: Any, model: Any, batches: list[dict[str, Any]]) -> dict[str, float]:
    """Max |input| of every Linear over ``batches`` (forward hooks, FP32)."""
    amax: dict[str, float] = {}

    def hook(name: str) -> Any:
        def fn(mod: Any, inp: tuple[Any, ...], out: Any) -> None:
            amax[name] = max(amax.get(name, 0.0), float(inp[0].abs().amax()))

        return fn

    hooks = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in hooks:
        h.remove()
    return amax


def make_build(torch: Any, fp32: Any, amax: dict[str, float], build: Build) -> Any:
    from workbench.backends.pytorch.lowp import QuantLinear, quantize_linears

    model = copy.deepcopy(fp32)
    if build.precision != "fp16":
        quantize_linears(
            model,
            amax,
            build.precision,  # type: ignore[arg-type]
            exclude=KEEP_FLOAT,
            per_channel=build.per_channel,
        )
        for m in model.modules():
            if isinstance(m, QuantLinear):
                m.fast_accum = build.fast_accum
    model = model.half().eval()
    if build.fused:
        from workbench.backends.pytorch.kernels.bert import fuse_bert_encoder
        from workbench.backends.pytorch.kernels.gemm import set_autotune

        set_autotune(True)
        return fuse_bert_encoder(model)
    if build.regional:
        for layer in model.bert.encoder.layer:
            layer.compile(dynamic=False)
        return model
    return torch.compile(model, dynamic=False)


def capture(torch: Any, model: Any, batch: int) -> tuple[Any, dict[str, Any], Any]:
    """Warm up (compiles) and capture one forward at (batch, SEQ); returns graph, inputs, out.

    The batch always has padding: Hugging Face drops an all-ones mask outside graph
    capture but not inside, and the compiled layers must see the same (a mask) in both.
    """
    static = random_batch(torch, batch, 123, pad=True)
    static["attention_mask"][:, -1] = 0  # never all ones (see above)
    warm = {k: v.clone() for k, v in static.items()}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):
            model(**warm)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph, stream=stream):
        out = model(**static).logits
    return graph, static, out


def time_graph(torch: Any, graph: Any, n: int) -> float:
    """Median ms of ``n`` single replays, each between two CUDA events."""
    for _ in range(10):
        graph.replay()
    ev = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(n)
    ]
    for s, e in ev:
        s.record()
        graph.replay()
        e.record()
    torch.cuda.synchronize()
    return float(np.median([s.elapsed_time(e) for s, e in ev]))


def graph_logits(torch: Any, graph: Any, static: dict[str, Any], out: Any, agree: list) -> Any:
    """Logits of the agreement batches through a captured b128 graph (copy in, replay)."""
    res = []
    for b in agree:
        for k, v in static.items():
            v.copy_(b[k])
        graph.replay()
        res.append(out.float().clone())
    return torch.cat(res)


def run_one(torch: Any, fp32: Any, amax: dict, build: Build, agree: list, ref: Any) -> list[dict]:
    t0 = time.perf_counter()
    torch._dynamo.reset()
    with torch._inductor.config.patch(build.inductor):
        model = make_build(torch, fp32, amax, build)
        rows, agreement, rel = [], float("nan"), float("nan")
        for batch in BATCHES:
            graph, static, out = capture(torch, model, batch)
            p50 = time_graph(torch, graph, 300 if batch == 1 else 100)
            if batch == 128:
                logits = graph_logits(torch, graph, static, out, agree)
                agreement = float((logits.argmax(1) == ref.argmax(1)).float().mean())
                rel = float((logits - ref).norm() / ref.norm())
            rows.append(
                {
                    "build": build.name,
                    "precision": build.precision,
                    "kernels": build.kernels,
                    "batch": batch,
                    "p50_ms": round(p50, 4),
                    "seq_per_s": round(batch / p50 * 1e3, 1),
                }
            )
            del graph
    prof = breakdown(torch, model, 128) if build.name in PROFILED else None
    if prof:
        log.info("%s breakdown at b128: %s", build.name, prof)
    weights_mib = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    for r in rows:
        r.update(
            agreement_vs_fp32=round(agreement, 5),
            logits_rel_err_vs_fp32=round(rel, 5),
            weights_mib=round(weights_mib / 2**20, 1),
        )
        if prof and r["batch"] == 128:
            r["breakdown_ms"] = prof
    log.info("%s done in %.1f s", build.name, time.perf_counter() - t0)
    del model
    torch.cuda.empty_cache()
    return rows


def kernel_category(name: str) -> str:
    """Which part of the forward a CUDA kernel belongs to, from its name."""
    low = name.lower()
    if "_quant_kernel" in low:  # workbench's _layernorm_quant_kernel, _gelu_quant_kernel
        return "quantize/LayerNorm (workbench Triton)"
    if low.startswith("triton"):  # before attention: fused kernels name the ops they hold
        return "fused element-wise (Inductor)"
    if any(k in low for k in ("fmha", "flash", "attention", "attn")):
        return "attention"
    if any(k in low for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_", "sm80_")):
        return "gemm"
    return "other"


def breakdown(torch: Any, model: Any, batch: int, reps: int = 5) -> dict[str, float]:
    """GPU ms per forward by kernel category (compiled model, eager launches, profiler)."""
    from torch.profiler import ProfilerActivity, profile

    inputs = random_batch(torch, batch, 7, pad=True)
    inputs["attention_mask"][:, -1] = 0
    with torch.inference_mode():
        for _ in range(3):
            model(**inputs)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                model(**inputs)
            torch.cuda.synchronize()
    out = dict.fromkeys(CATEGORIES, 0.0)
    top: dict[str, float] = {}
    for e in prof.key_averages():
        us = float(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0))
        if us > 0:
            out[kernel_category(e.key)] += us / reps / 1e3
            top[e.key] = us / reps / 1e3
    out = {k: round(v, 4) for k, v in out.items()}
    out["total"] = round(sum(out.values()), 4)
    heavy = sorted(top.items(), key=lambda kv: -kv[1])[:8]
    return {**out, "top_kernels": [[k[:90], round(v, 4)] for k, v in heavy]}  # type: ignore[dict-item]


def models_per_gpu(torch: Any, fp32: Any, amax: dict, build: Build, ks: tuple[int, ...]) -> list:
    """Aggregate seq/s of k instances (own weights, own graph, own stream) replayed together."""
    out = []
    torch._dynamo.reset()
    models, graphs = [], []
    for k in range(1, max(ks) + 1):
        before = torch.cuda.memory_allocated()
        models.append(make_build(torch, fp32, amax, build))
        graphs.append(capture(torch, models[-1], SERVE_BATCH)[0])
        torch.cuda.synchronize()
        mib = (torch.cuda.memory_allocated() - before) / 2**20
        if k not in ks:
            continue
        streams = [torch.cuda.Stream() for _ in range(k)]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        n = 50
        for _ in range(2):  # the second pass is the timed one
            start.record()
            for st, g in zip(streams, graphs[:k], strict=True):
                st.wait_event(start)
                with torch.cuda.stream(st):
                    for _ in range(n):
                        g.replay()
            for st in streams:
                torch.cuda.current_stream().wait_stream(st)
            end.record()
            torch.cuda.synchronize()
        ms = start.elapsed_time(end)
        out.append(
            {
                "build": build.name,
                "batch": SERVE_BATCH,
                "instances": k,
                "aggregate_seq_per_s": round(k * n * SERVE_BATCH / ms * 1e3, 1),
                "mib_per_instance": round(mib, 1),
            }
        )
    del models, graphs
    torch.cuda.empty_cache()
    return out


def table(rows: list[dict]) -> str:
    fp16 = {r["batch"]: r["seq_per_s"] for r in rows if r["build"] == "fp16-compile-graphs"}
    lines = [
        "| build | batch | p50 ms | seq/s | x fp16 | agree vs fp32 | rel err |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        x = r["seq_per_s"] / fp16[r["batch"]] if r["batch"] in fp16 else float("nan")
        lines.append(
            f"| {r['build']} | {r['batch']} | {r['p50_ms']:.3f} | {r['seq_per_s']:,.0f} "
            f"| {x:.2f} | {r['agreement_vs_fp32']:.4f} | {r['logits_rel_err_vs_fp32']:.4f} |"
        )
    return "\n".join(lines)


def breakdown_table(rows: list[dict]) -> str:
    """GPU ms per b128 forward by kernel category, for the profiled builds."""
    lines = ["| build | " + " | ".join(CATEGORIES) + " | total |", "|---" * 7 + "|"]
    for r in rows:
        b = r.get("breakdown_ms")
        if b:
            cells = " | ".join(f"{b[c]:.2f}" for c in (*CATEGORIES, "total"))
            lines.append(f"| {r['build']} | {cells} |")
    return "\n".join(lines)


def _result(torch: Any, rows: list, serving: list, skipped: list, t_start: float) -> dict:
    return {
        "gpu": torch.cuda.get_device_name(),
        "model": "bert-base",
        "seq": SEQ,
        "rows": rows,
        "models_per_gpu": serving,
        "gpu_memory_mib": round(torch.cuda.get_device_properties(0).total_memory / 2**20),
        "skipped": skipped,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "gemm_configs": _gemm_configs(),
        "notes": "random weights; encoder Linears quantized (pooler, classifier fp16); "
        "max calibration; CUDA-graph replays timed with CUDA events, inputs on the GPU; "
        "each row's `kernels` says whose kernels ran it: TensorRT (not on this machine) may be "
        "faster or slower than what was measured here",
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }


def _triton_version() -> str:
    import triton

    return str(triton.__version__)


def _gemm_configs() -> dict[str, str]:
    """The Triton GEMM configs autotuning chose for the fused builds (empty if none ran)."""
    from workbench.backends.pytorch.kernels.gemm import chosen_configs

    return chosen_configs()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_lowp.json"))
    ap.add_argument("--time-budget-s", type=float, default=420.0)
    ap.add_argument("--builds", nargs="*", default=[b.name for b in BUILDS])
    ap.add_argument(
        "--models-per-gpu",
        action="store_true",
        help="also k = 1, 2, 4, 8 instances on streams (died without a message on the H200)",
    )
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    before = load_average()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    t_start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch._dynamo.config.recompile_limit = 64  # no silent fall-back to eager
    fp32 = base_model(torch)
    amax = calibrate_max(torch, fp32, [random_batch(torch, 64, s, pad=True) for s in (1, 2)])
    agree = [random_batch(torch, 128, 100 + i, pad=True) for i in range(N_AGREE // 128)]
    with torch.no_grad():
        ref = torch.cat([fp32(**b).logits.float() for b in agree])
    rows: list[dict] = []
    skipped: list[str] = []
    by_name = {b.name: b for b in BUILDS}
    unknown = [n for n in args.builds if n not in by_name]
    if unknown:
        ap.error(f"unknown build(s) {unknown}; choose from {list(by_name)}")
    for build in (by_name[n] for n in args.builds):  # in the order asked
        if time.perf_counter() - t_start > args.time_budget_s:
            skipped.append(build.name)
            continue
        try:
            rows.extend(run_one(torch, fp32, amax, build, agree, ref))
        except Exception as exc:  # one failing build must not lose the others' numbers
            log.exception("%s failed", build.name)
            skipped.append(f"{build.name}: {type(exc).__name__}: {str(exc)[:200]}")
    result = _result(torch, rows, [], skipped, t_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_result(args.out, result, before, force=args.force_overwrite)  # before the optional part
    print(table(rows), flush=True)
    print(breakdown_table(rows), flush=True)
    serving: list[dict] = []
    for build in (BUILDS[0], BUILDS[3]) if args.models_per_gpu else ():  # fp16 vs fp8
        if time.perf_counter() - t_start > args.time_budget_s:
            skipped.append(f"models-per-GPU {build.name}")
            continue
        try:
            serving.extend(models_per_gpu(torch, fp32, amax, build, (1, 2, 4, 8)))
        except Exception as exc:  # keep the rows measured so far
            log.exception("models per GPU, %s, failed", build.name)
            skipped.append(f"models-per-GPU {build.name}: {type(exc).__name__}: {str(exc)[:200]}")
    if serving:
        full = _result(torch, rows, serving, skipped, t_start)
        save_result(args.out, full, before, force=True)  # this run's own first write
    for r in serving:
        print(r)
    if skipped:
        print("skipped:", *skipped, sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
