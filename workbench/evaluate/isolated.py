"""Latency and peak memory of one build, measured in a fresh child process.

A child per build gives each build a true peak RSS (load + inference) and keeps
one build's allocator state from skewing the next one's timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

from workbench.backends.base import Runner
from workbench.errors import EngineBuildError
from workbench.results.records import LatencyResult
from workbench.results.serde import from_dict


@dataclass(frozen=True)
class LatencySpec:
    """What to time: a build (backend + model file/dir) and the shapes and iterations."""

    backend: str  # "onnxruntime" | "pytorch"
    model: str  # ONNX file (onnxruntime) or prepared model dir (pytorch)
    tokenizer_file: str  # tokenizer.json that makes the feeds
    precision: str
    shapes: list[tuple[int, int]]  # (batch, seq)
    iterations: int
    warmup: int
    max_seconds_per_shape: float
    threads: int


@dataclass(frozen=True)
class LatencyOutcome:
    """The child's measurements."""

    latency: list[LatencyResult]
    peak_rss_mb: float


def measure_isolated(spec: LatencySpec, timeout_s: float = 900) -> LatencyOutcome:
    """Run ``spec`` in a child Python process and read its JSON answer."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.evaluate.isolated", json.dumps(asdict(spec))],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineBuildError(f"latency child for {spec.backend} {spec.precision} failed: {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return LatencyOutcome(
        latency=[from_dict(LatencyResult, x) for x in data["latency"]],
        peak_rss_mb=float(data["peak_rss_mb"]),
    )


def _child(spec: LatencySpec) -> dict[str, object]:
    from workbench.data.tokenize import TextTokenizer
    from workbench.evaluate.latency import fixed_shape_feed, measure_latency
    from workbench.evaluate.memory import peak_rss_mb
    from workbench.results.serde import to_dict

    runner = _open_runner(spec)
    tok = TextTokenizer(spec.tokenizer_file, max(seq for _, seq in spec.shapes))
    texts = ["a long and winding review of a film that is, on balance, worth the ticket price"] * 4
    results = []
    with runner:
        for batch, seq in spec.shapes:
            feed = fixed_shape_feed(texts, tok, batch, seq)
            results.append(
                measure_latency(
                    runner, feed, spec.iterations, spec.warmup, spec.max_seconds_per_shape
                )
            )
    return {"latency": to_dict(results), "peak_rss_mb": peak_rss_mb()}


def _open_runner(spec: LatencySpec) -> Runner:
    if spec.backend == "pytorch":
        from workbench.backends.pytorch.artifact import load_artifact
        from workbench.backends.pytorch.model import load_torch_classifier
        from workbench.backends.pytorch.runner import TorchRunner

        model = load_torch_classifier(load_artifact(spec.model))
        return TorchRunner(model, precision=spec.precision, threads=spec.threads or None)
    from workbench.backends.onnxruntime.runner import OrtRunner

    return OrtRunner(spec.model, precision=spec.precision, intra_op_threads=spec.threads)


if __name__ == "__main__":
    s = json.loads(sys.argv[1])
    s["shapes"] = [tuple(x) for x in s["shapes"]]
    print(json.dumps(_child(LatencySpec(**s))))
