"""Latency and peak memory of one build, measured in a fresh child process.

A child per build gives each build a true peak RSS (load + inference) and keeps
one build's allocator state from skewing the next one's timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from workbench.backends.registry import Artifact, BuildRequest
from workbench.errors import EngineBuildError
from workbench.results.records import LatencyResult
from workbench.results.serde import from_dict, to_dict


@dataclass(frozen=True)
class LatencySpec:
    """What to time: a built artifact (opened through the backend registry) and the shapes."""

    request: BuildRequest
    artifact: Artifact
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
        [sys.executable, "-m", "workbench.evaluate.isolated", json.dumps(to_dict(spec))],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineBuildError(f"latency child for {spec.request.name} failed: {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return LatencyOutcome(
        latency=[from_dict(LatencyResult, x) for x in data["latency"]],
        peak_rss_mb=float(data["peak_rss_mb"]),
    )


def _child(spec: LatencySpec) -> dict[str, object]:
    from workbench.backends.registry import get_backend
    from workbench.data.tokenize import TextTokenizer
    from workbench.evaluate.latency import fixed_shape_feed, measure_latency
    from workbench.evaluate.memory import peak_rss_mb

    backend = get_backend(spec.request.backend)
    runner = backend.open_runner(spec.request, spec.artifact, spec.threads)
    tok = TextTokenizer(spec.request.tokenizer_file, max(seq for _, seq in spec.shapes))
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


if __name__ == "__main__":
    print(json.dumps(_child(from_dict(LatencySpec, json.loads(sys.argv[1])))))
