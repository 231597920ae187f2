"""One build through the engine's steps: build (cached) -> logits -> latency -> measurement.

Logits and latency are cached by content hash (artifact, test set, shapes, machine), so a
run restarted after a kill reuses every build that finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.backends.registry import Artifact, BuildRequest, capabilities, get_backend
from workbench.fileio import (
    atomic_write_json,
    build_entry,
    cache_root,
    reuse_entry,
    sha256_json,
)
from workbench.results.records import Int8Coverage, LatencyResult, PairedSpeedup
from workbench.results.serde import from_dict, to_dict

if TYPE_CHECKING:
    from workbench.experiment.calibrate import CalibrationOutcome
    from workbench.experiment.progress import Stages
    from workbench.experiment.workspace import Workspace
    from workbench.results.spec import Experiment

EVAL_VERSION = 2  # 2: sealed cache entries


@dataclass(frozen=True)
class BuildMeasurement:
    """What the engine measured for one build (before it becomes a ``BuildResult``)."""

    request: BuildRequest
    artifact: Artifact
    logits: np.ndarray
    latency: list[LatencyResult]
    peak_rss_mb: float
    peak_device_mem_mb: float | None
    int8_coverage: Int8Coverage | None
    device_name: str


def measure_build(
    ws: Workspace,
    req: BuildRequest,
    calib: CalibrationOutcome | None,
    run_dir: Path,
    st: Stages,
) -> BuildMeasurement:
    """Build ``req`` and measure it on the Workspace's test split."""
    backend = get_backend(req.backend)
    with st.stage(f"build {req.name}"):
        artifact = backend.build(req, calib.feeds() if calib else None)
        coverage = backend.int8_audit(req, artifact)
    device_name = _device_name(req.device)
    base = {
        "artifact": artifact.model_sha256,
        "req": {k: v for k, v in to_dict(req).items() if k not in ("cache_dir",)},
        "v": EVAL_VERSION,
    }
    key = sha256_json({**base, "test": ws.test_sha256})[:20]
    logits_file = cache_root() / "evals" / key / "logits.npy"
    if reuse_entry(logits_file.parent, f"logits of {req.name}"):
        logits = np.load(logits_file)
    else:
        with st.stage(f"evaluate {req.name}") as bar:
            logits = _logits(ws, req, artifact, st.callback(bar))
        build_entry(logits_file, lambda tmp: _save_npy(tmp, logits))
    e = ws.exp.evaluate
    lkey = sha256_json({**base, "eval": to_dict(e), "machine": _machine(), "device": device_name})[
        :20
    ]
    latency_file = cache_root() / "latency" / lkey / "latency.json"
    if reuse_entry(latency_file.parent, f"latency of {req.name}"):
        cached = json.loads(latency_file.read_text(encoding="utf-8"))
        latency = [from_dict(LatencyResult, x) for x in cached["latency"]]
        rss, dev_mb = float(cached["peak_rss_mb"]), cached["peak_device_mem_mb"]
    else:
        with st.stage(f"latency {req.name}"):
            latency, rss, dev_mb = _latency(ws, req, artifact)
        record = {"latency": to_dict(latency), "peak_rss_mb": rss, "peak_device_mem_mb": dev_mb}
        build_entry(latency_file, lambda tmp: atomic_write_json(tmp, record))
    return BuildMeasurement(req, artifact, logits, latency, rss, dev_mb, coverage, device_name)


def gated_pairs(exp: Experiment) -> list[tuple[str, str, tuple[int, int]]]:
    """(speed baseline, candidate, shape) of every pair the gate's speed rule will judge."""
    g, p = exp.gate, exp.gate.policy
    if not g.enabled or p is None or p.min_speedup is None:
        return []
    base = p.speedup_baseline or g.baseline
    shape = (p.latency_batch, p.latency_seq)
    return [(base, c, shape) for c in g.candidates if c != base]


def measure_speedups(
    ws: Workspace, measured: dict[str, BuildMeasurement], st: Stages
) -> list[PairedSpeedup]:
    """Time each gated CPU pair paired and interleaved (GPU pairs: CUDA events, per build)."""
    from workbench.evaluate.paired import PairedConfig, PairedTarget, measure_paired

    e = ws.exp.evaluate
    cfg = PairedConfig(warmup=max(e.warmup, 1), seed=ws.exp.seed)
    if ws.exp.quick:  # a smoke run: fewer, shorter blocks (a wider CI, said as INCONCLUSIVE)
        cfg = replace(cfg, rounds=8, block_ms=50.0)
    out = []
    for base, cand, shape in gated_pairs(ws.exp):
        mb, mc = measured.get(base), measured.get(cand)
        if mb is None or mc is None or not mb.device_name == mc.device_name == "cpu":
            continue
        if not all(capabilities(m.request.backend).isolated_timing for m in (mb, mc)):
            continue  # paired timing opens both builds in child processes, by backend name
        with st.stage(f"paired latency {cand} vs {base}"):
            out.append(
                measure_paired(
                    PairedTarget(mb.request, mb.artifact),
                    PairedTarget(mc.request, mc.artifact),
                    shape,
                    e.threads,
                    cfg,
                )
            )
    return out


def _save_npy(tmp: Path, arr: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, arr)


def _logits(ws: Workspace, req: BuildRequest, artifact: Artifact, progress) -> np.ndarray:
    from workbench.evaluate.accuracy import predict_logits

    runner = get_backend(req.backend).open_runner(req, artifact, ws.exp.evaluate.threads)
    with runner:
        logits = predict_logits(runner, ws.texts, ws.tokenizer, progress=progress, pairs=ws.pairs)
    return logits.astype(np.float32)


def _latency(
    ws: Workspace, req: BuildRequest, artifact: Artifact
) -> tuple[list[LatencyResult], float, float | None]:
    """CPU: a fresh child process per build where the backend can be opened there by name;
    GPU (or a backend registered in this process only): in this process."""
    from workbench.evaluate.memory import peak_rss_mb

    e = ws.exp.evaluate
    if req.device != "cpu":
        return _gpu_latency(ws, req, artifact)
    if not capabilities(req.backend).isolated_timing:
        return _in_process(ws, req, artifact, e.threads), peak_rss_mb(), None
    from workbench.evaluate.isolated import LatencySpec, measure_isolated

    out = measure_isolated(
        LatencySpec(req, artifact, list(e.shapes), e.iterations, e.warmup, e.max_seconds, e.threads)
    )
    return out.latency, out.peak_rss_mb, None


def _gpu_latency(
    ws: Workspace, req: BuildRequest, artifact: Artifact
) -> tuple[list[LatencyResult], float, float | None]:
    """In this process, with the device's peak memory."""
    import torch

    from workbench.evaluate.memory import peak_rss_mb

    torch.cuda.reset_peak_memory_stats()
    results = _in_process(ws, req, artifact, 0)
    dev_mb = torch.cuda.max_memory_allocated() / (1 << 20)
    return results, peak_rss_mb(), dev_mb


def _in_process(
    ws: Workspace, req: BuildRequest, artifact: Artifact, threads: int
) -> list[LatencyResult]:
    """Each shape timed in this process: CUDA events where the backend's capabilities say
    ``cuda_event_timing`` (on a GPU), else wall clock around synchronous ``infer``."""
    from workbench.evaluate.latency import fixed_shape_feed, measure_latency

    e = ws.exp.evaluate
    events = req.device != "cpu" and capabilities(req.backend).cuda_event_timing
    texts = ["a long and winding review of a film that is, on balance, worth the ticket price"] * 4
    results = []
    with get_backend(req.backend).open_runner(req, artifact, threads) as runner:
        for batch, seq in e.shapes:
            feed = fixed_shape_feed(texts, ws.tokenizer, batch, seq)
            if events:
                from workbench.evaluate.gpu_timing import measure_gpu_latency

                iters = max(e.iterations, 200)
                results.append(measure_gpu_latency(runner, feed, iters, max(e.warmup, 20)))  # type: ignore[arg-type]
            else:
                results.append(measure_latency(runner, feed, e.iterations, e.warmup, e.max_seconds))
    return results


def _device_name(device: str) -> str:
    if device == "cpu":
        return "cpu"
    import torch

    return f"cuda:{torch.cuda.get_device_name(0)}"


def _machine() -> dict[str, object]:
    import os

    from workbench.provenance import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count()}
