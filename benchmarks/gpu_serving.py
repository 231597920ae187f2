"""Models per GPU: k BERT-base instances in k processes on one GPU, FP16 vs FP8.

Each build starts max(k) worker processes (spawn) once; each builds its own model
with ``benchmarks.gpu_lowp`` (random weights, seq 128, compiled encoder layers)
and captures one CUDA graph at ``--batch``. For every k, the first k ready workers
meet at a barrier and replay their graph for ``--seconds``; the others stay idle.
Aggregate seq/s is the sum of the workers' own rates. Memory per instance is the
drop in device free memory (``mem_get_info``, seen by a monitor process that also
holds a CUDA context) over the ready workers, contexts included; "estimated max
instances" divides the free memory before the build by it (an estimate: it
ignores fragmentation and anything a serving stack adds). The parent never
touches CUDA. ``--cpu-smoke`` runs the same orchestration with a tiny float BERT
on the CPU (no compile, no graphs) for the tests.

Example (on the GPU machine)::

    PYTHONPATH=. python3 benchmarks/gpu_serving.py --out $OUT/gpu_serving.json --time-budget-s 200
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result

log = logging.getLogger("benchmarks.gpu_serving")

SEQ = 128
BUILD_NAMES = {"fp16": "fp16-compile-graphs", "fp8": "fp8-static-pertensor-w-fastaccum"}
MIB = 2**20


def _mib(n: float) -> float:
    return round(n / MIB, 1)


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# --------------------------------------------------------------------------- worker side
def _setup_gpu(cfg: dict) -> tuple[Any, Any, dict]:
    """Build one instance in this process (gpu_lowp's recipe); returns (step, sync, memory)."""
    import gc

    import torch

    from benchmarks import gpu_lowp as gl

    torch.backends.cuda.matmul.allow_tf32 = False
    torch._dynamo.config.recompile_limit = 64  # no silent fall-back to eager
    free0, total = torch.cuda.mem_get_info()
    fp32 = gl.base_model(torch)
    amax = gl.calibrate_max(torch, fp32, [gl.random_batch(torch, 64, s, pad=True) for s in (1, 2)])
    build = next(b for b in gl.BUILDS if b.name == cfg["build"])
    with torch._inductor.config.patch(build.inductor):
        model = gl.make_build(torch, fp32, amax, build)
        graph, static, out = gl.capture(torch, model, cfg["batch"])
    del fp32
    gc.collect()
    torch.cuda.empty_cache()
    for _ in range(10):
        graph.replay()
    torch.cuda.synchronize()
    free1, _ = torch.cuda.mem_get_info()
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    mem = {
        "weights_mib": _mib(weights),
        "torch_allocated_mib": _mib(torch.cuda.memory_allocated()),
        "torch_reserved_mib": _mib(torch.cuda.memory_reserved()),
        "free_before_mib": _mib(free0),
        "free_after_mib": _mib(free1),
        "total_mib": _mib(total),
    }

    def step(_keep: tuple = (model, static, out)) -> None:  # the graph reads these buffers
        graph.replay()

    return step, torch.cuda.synchronize, mem


def _setup_cpu(cfg: dict) -> tuple[Any, Any, dict]:
    """A tiny float BERT on the CPU (one thread): the orchestration without a GPU."""
    import resource

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.set_num_threads(1)
    torch.manual_seed(0)
    c = BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=200,
        max_position_embeddings=SEQ,
    )
    model = BertForSequenceClassification(c).eval()
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(1, 200, (cfg["batch"], SEQ), generator=g)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())

    def step() -> None:
        with torch.inference_mode():
            model(input_ids=ids)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return step, (lambda: None), {"weights_mib": _mib(weights), "rss_mib": _mib(rss)}


def _timed(step: Any, sync: Any, seconds: float, every: int, die: bool) -> tuple[int, float]:
    """Replay until ``seconds`` have passed, syncing every ``every`` steps; (batches, s)."""
    count, t0 = 0, time.perf_counter()
    while True:
        for _ in range(every):
            step()
        sync()
        count += every
        if die:  # fault injection for the tests: a worker killed mid-run
            os._exit(3)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return count, elapsed


def _worker(rank: int, cfg: dict, conn: Any, barriers: dict[int, Any]) -> None:
    """One instance: build, report memory, then serve "run" commands until "stop"."""
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = str(cfg["compile_threads"][rank])
    fail = cfg["fail_rank"] == rank
    try:
        if fail and cfg["fail_at"] == "setup":
            raise RuntimeError(f"injected setup failure in rank {rank}")
        step, sync, mem = (_setup_cpu if cfg["cpu_smoke"] else _setup_gpu)(cfg)
    except Exception as exc:
        conn.send(("error", f"setup: {_err(exc)}"))
        log.error("rank %d setup failed:\n%s", rank, traceback.format_exc())
        raise SystemExit(1) from exc
    conn.send(("ready", mem))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "stop":
            return
        k, seconds, every = msg[1:]
        try:
            barriers[k].wait()
            die = fail and cfg["fail_at"] == "run"
            count, elapsed = _timed(step, sync, seconds, every, die)
            conn.send(("done", count, elapsed))
        except Exception as exc:  # a broken barrier or a failing replay: report, keep serving
            conn.send(("error", f"run k={k}: {_err(exc)}"))


def _monitor(conn: Any) -> None:
    """Holds one CUDA context and answers "free" with (free, total) bytes; no CUDA in the parent."""
    import torch

    try:
        free, total = torch.cuda.mem_get_info()
        conn.send(("ready", torch.cuda.get_device_name(), torch.__version__, free, total))
    except Exception as exc:
        conn.send(("error", _err(exc)))
        return
    while conn.recv()[0] == "free":
        conn.send(("free", *torch.cuda.mem_get_info()))


# --------------------------------------------------------------------------- parent side
def _describe(msg: tuple) -> str:
    """A worker's failure message in words."""
    if msg[0] == "died":
        return f"died (exitcode {msg[1]})"
    if msg[0] == "timeout":
        return "no answer before the timeout (terminated)"
    return str(msg[1]) if len(msg) > 1 else str(msg[0])


def _recv(conn: Any, proc: Any, timeout: float) -> tuple:
    """Next message of one process, or ("died", exitcode) / ("timeout",): never blocks forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.2):
            try:
                return conn.recv()
            except EOFError:  # the worker's end closed: it exited
                proc.join(5)
                return ("died", proc.exitcode)
        if not proc.is_alive() and not conn.poll(0):
            proc.join(5)
            return ("died", proc.exitcode)
    return ("timeout",)


class Workers:
    """max(k) worker processes of one build; rank 0 starts first so it fills the compile cache."""

    def __init__(self, ctx: Any, cfg: dict, n: int, barrier_timeout: float) -> None:
        self.barriers = {k: ctx.Barrier(k, timeout=barrier_timeout) for k in range(1, n + 1)}
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.child_ends: list[Any] = []
        self.mem: dict[int, dict] = {}
        self.errors: dict[int, str] = {}
        for rank in range(n):
            parent, child = ctx.Pipe()
            # not daemonic: Inductor's compile workers are child processes of the worker
            p = ctx.Process(target=_worker, args=(rank, cfg, child, self.barriers))
            self.procs.append(p)
            self.conns.append(parent)
            self.child_ends.append(child)

    def start(self, ready_timeout: float) -> None:
        """Start rank 0 and wait for it, then the others in parallel."""
        for group in ([0], range(1, len(self.procs))):
            for r in group:
                self.procs[r].start()
                self.child_ends[r].close()
            deadline = time.monotonic() + ready_timeout
            for r in group:
                msg = _recv(self.conns[r], self.procs[r], max(1.0, deadline - time.monotonic()))
                if msg[0] == "ready":
                    self.mem[r] = msg[1]
                else:
                    self.errors[r] = f"rank {r}: {_describe(msg)}"
                    self._kill(r)

    def ready(self) -> list[int]:
        return [r for r in range(len(self.procs)) if r in self.mem and r not in self.errors]

    def _kill(self, r: int) -> None:
        """Give a failed worker a moment to exit on its own, then terminate it."""
        self.procs[r].join(5)
        if self.procs[r].is_alive():
            self.procs[r].terminate()
            self.procs[r].join(5)

    def run(self, ranks: list[int], seconds: float, every: int, timeout: float) -> dict:
        """Timed cell on ``ranks``; {rank: ("done", n, s) | ("error", ...) | ("died", code)}."""
        for r in ranks:
            self.conns[r].send(("run", len(ranks), seconds, every))
        out = {}
        deadline = time.monotonic() + timeout
        for r in ranks:
            out[r] = _recv(self.conns[r], self.procs[r], max(1.0, deadline - time.monotonic()))
            if out[r][0] in ("died", "timeout"):
                self.errors[r] = f"rank {r}: {_describe(out[r])}"
                self._kill(r)
        return out

    def stop(self) -> dict[int, int | None]:
        for r, p in enumerate(self.procs):
            if p.is_alive():
                with contextlib.suppress(OSError):  # a pipe whose worker just died
                    self.conns[r].send(("stop",))
        for r, p in enumerate(self.procs):
            p.join(15)
            self._kill(r)
        return {r: p.exitcode for r, p in enumerate(self.procs)}


def _cell_row(build: str, k: int, batch: int, got: dict, ready_errs: list[str]) -> dict:
    """One (build, k) row: per-worker rates, their sum, mean latency, failures."""
    workers, errors = [], list(ready_errs)
    for r, msg in got.items():
        if msg[0] == "done":
            n, s = msg[1], msg[2]
            workers.append(
                {
                    "rank": r,
                    "batches": n,
                    "elapsed_s": round(s, 4),
                    "seq_per_s": round(n * batch / s, 1),
                    "ms_per_batch": round(s / n * 1e3, 4),
                }
            )
        else:
            errors.append(f"rank {r}: {_describe(msg)}")
    ms = [w["ms_per_batch"] for w in workers]
    return {
        "build": BUILD_NAMES.get(build, build),
        "precision": build,
        "instances": k,
        "batch": batch,
        "ok": not errors and len(workers) == k,
        "aggregate_seq_per_s": round(sum(w["seq_per_s"] for w in workers), 1),
        "mean_ms_per_batch": round(sum(ms) / len(ms), 4) if ms else None,
        "workers": workers,
        "errors": errors,
    }


def _fit(build: str, ws: Workers, free0: int | None, monitor: Any) -> dict:
    """Memory per instance and the estimated number of instances that fit."""
    ready = ws.ready()
    mem = [ws.mem[r] for r in ready]
    fit: dict[str, Any] = {"build": BUILD_NAMES.get(build, build), "ready_instances": len(ready)}
    for key in ("weights_mib", "torch_allocated_mib", "torch_reserved_mib", "rss_mib"):
        vals = [m[key] for m in mem if key in m]
        if vals:
            fit[key] = round(sum(vals) / len(vals), 1)
    if monitor is not None and free0 is not None and ready:
        monitor[0].send(("free",))
        msg = _recv(monitor[0], monitor[1], 30)
        if msg[0] == "free":
            per = (free0 - msg[1]) / len(ready)
            fit["device_mib_per_instance"] = _mib(per)
            fit["free_before_build_mib"] = _mib(free0)
            fit["estimated_max_instances"] = math.floor(free0 / per) if per > 0 else None
            fit["note"] = "estimate: free memory before the build / device memory per instance"
    return fit


def _run_build(ctx: Any, build: str, args: Any, res: dict, mon: Any, t0: float) -> None:
    """All k cells of one build on one set of workers; rows appended to ``res`` as they finish."""
    n = max(args.instances)
    cpus = min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    cfg = {
        "build": BUILD_NAMES.get(build, build),
        "batch": args.batch,
        "cpu_smoke": args.cpu_smoke,
        "fail_rank": args.fail_rank,
        "fail_at": args.fail_at,
        # rank 0 compiles alone (cold cache), the others in parallel mostly from the cache
        "compile_threads": [cpus] + [max(1, min(4, cpus // max(1, n - 1)))] * (n - 1),
    }
    free0 = None
    if mon is not None:
        mon[0].send(("free",))
        msg = _recv(mon[0], mon[1], 30)
        free0 = msg[1] if msg[0] == "free" else None
    ws = Workers(ctx, cfg, n, args.barrier_timeout_s)
    try:
        ws.start(args.ready_timeout_s)
        res["fit"].append(_fit(build, ws, free0, mon))
        args.write(res)
        for k in sorted(set(args.instances)):
            if time.perf_counter() - t0 > args.time_budget_s:
                res["skipped"].append(
                    f"{build} k={k}: time budget {args.time_budget_s:.0f} s spent"
                )
                continue
            ready = ws.ready()
            if len(ready) < k:
                errs = [f"only {len(ready)} of {k} workers ready", *ws.errors.values()]
                res["rows"].append(_cell_row(build, k, args.batch, {}, errs))
            else:
                timeout = args.seconds + args.barrier_timeout_s + 60
                got = ws.run(ready[:k], args.seconds, args.sync_every, timeout)
                res["rows"].append(_cell_row(build, k, args.batch, got, []))
            row = res["rows"][-1]
            one = [r for r in res["rows"] if r["precision"] == build and r["instances"] == 1]
            base = one[0]["aggregate_seq_per_s"] if one else 0
            row["x_vs_k1"] = round(row["aggregate_seq_per_s"] / base, 3) if base else None
            mem = res["fit"][-1]
            row["mib_per_instance"] = mem.get("device_mib_per_instance", mem.get("weights_mib"))
            log.info("%s k=%d: %.0f seq/s ok=%s", build, k, row["aggregate_seq_per_s"], row["ok"])
            args.write(res)
    finally:
        res["exitcodes"][build] = ws.stop()
        args.write(res)


def table(rows: list[dict]) -> str:
    """Markdown table of the rows: build, k, aggregate seq/s, x vs k=1, ms per batch, MiB."""
    lines = [
        "| build | k | aggregate seq/s | x vs k=1 | ms/batch per instance "
        "| MiB per instance | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        x = "-" if r.get("x_vs_k1") is None else f"{r['x_vs_k1']:.2f}"
        ms = "-" if r["mean_ms_per_batch"] is None else f"{r['mean_ms_per_batch']:.3f}"
        lines.append(
            f"| {r['build']} | {r['instances']} | {r['aggregate_seq_per_s']:,.0f} | {x} | {ms} "
            f"| {r.get('mib_per_instance')} | {'yes' if r['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_serving.json"))
    ap.add_argument("--builds", nargs="+", choices=sorted(BUILD_NAMES), default=["fp16", "fp8"])
    ap.add_argument("--instances", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0, help="timed replay per cell")
    ap.add_argument("--sync-every", type=int, default=4, help="replays between synchronizations")
    ap.add_argument("--time-budget-s", type=float, default=600.0, help="skip cells after this")
    ap.add_argument("--ready-timeout-s", type=float, default=300.0, help="per start group")
    ap.add_argument("--barrier-timeout-s", type=float, default=60.0)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU (tests)")
    ap.add_argument("--fail-rank", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--fail-at", choices=("setup", "run"), default="run", help=argparse.SUPPRESS)
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    if min(args.instances) < 1 or args.batch < 1 or args.seconds <= 0 or args.sync_every < 1:
        ap.error("--instances, --batch, --sync-every must be >= 1 and --seconds > 0")
    return args


def _start_monitor(ctx: Any) -> tuple[Any, Any, tuple]:
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_monitor, args=(child,))
    proc.start()
    child.close()
    return parent, proc, _recv(parent, proc, 120)


def main(argv: list[str] | None = None) -> int:
    """Run every (build, k) cell; exit 0 when all ran, 1 when a cell failed, 3 without CUDA."""
    import multiprocessing as mp

    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    t0, before = time.perf_counter(), load_average()
    ctx = mp.get_context("spawn")
    res: dict[str, Any] = {
        "gpu": "cpu-smoke" if args.cpu_smoke else None,
        "model": "tiny-bert" if args.cpu_smoke else "bert-base",
        "seq": SEQ,
        "batch": args.batch,
        "seconds": args.seconds,
        "rows": [],
        "fit": [],
        "skipped": [],
        "exitcodes": {},
        "torch": importlib.metadata.version("torch"),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    def write(r: dict) -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        save_result(args.out, r, before, force=args.force_overwrite)

    args.write = write
    mon = None
    if not args.cpu_smoke:
        conn, proc, msg = _start_monitor(ctx)
        if msg[0] != "ready":
            print(f"no CUDA GPU for the monitor process ({msg}); run on the GPU machine")
            return 3
        mon = (conn, proc)
        res["gpu"], res["torch"] = msg[1], msg[2]
        res["gpu_memory_mib"] = _mib(msg[4])
    try:
        for build in args.builds:
            if time.perf_counter() - t0 > args.time_budget_s:
                res["skipped"].append(f"{build}: time budget {args.time_budget_s:.0f} s")
                continue
            _run_build(ctx, build, args, res, mon, t0)
    finally:
        if mon is not None:
            mon[0].send(("stop",))
            mon[1].join(10)
        write(res)
    print(table(res["rows"]), flush=True)
    for f in res["fit"]:
        print({k: v for k, v in f.items() if k != "note"})
    if res["skipped"]:
        print("skipped:", *res["skipped"], sep="\n  ")
    return 0 if all(r["ok"] for r in res["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
