"""Latency and peak memory of one build, measured in a fresh child process.

A child per build gives each build a true peak RSS (load + inference) and keeps
one build's allocator state from skewing the next one's timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType

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


MARK = "@@workbench "  # prefix of the serving child's answers (other output is ignored)


class BuildProcess:
    """One build kept warm in its own child process, timing blocks of runs on request.

    The child opens the runner at ``spec.shapes[0]``, does ``spec.warmup`` untimed runs, then
    answers each block request with the block's wall time (``perf_counter_ns``) and the
    process's CPU time (``process_time_ns``: every thread of the child).
    """

    def __init__(self, spec: LatencySpec) -> None:
        self.spec = spec
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.evaluate.isolated", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self._send(json.dumps(to_dict(spec)))
        self.run_ms = float(self._read()["run_ms"])

    def run_block(self, runs: int) -> tuple[int, int]:
        """Time ``runs`` back-to-back runs; (wall ns, process CPU ns) of the block."""
        self._send(str(runs))
        answer = self._read()
        return int(answer["wall_ns"]), int(answer["cpu_ns"])

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send("0")
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._err.close()

    def __enter__(self) -> BuildProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._fail()

    def _read(self) -> dict:
        assert self._proc.stdout is not None
        while line := self._proc.stdout.readline():
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        self._fail()
        raise AssertionError  # unreachable: _fail raises

    def _fail(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self._err.seek(0)
        tail = (self._err.read().strip().splitlines() or ["no output"])[-1]
        raise EngineBuildError(f"latency child for {self.spec.request.name} failed: {tail}")


def _open(spec: LatencySpec) -> tuple:
    """(runner, tokenizer, texts) for the child."""
    from workbench.backends.registry import get_backend
    from workbench.data.tokenize import TextTokenizer

    backend = get_backend(spec.request.backend)
    runner = backend.open_runner(spec.request, spec.artifact, spec.threads)
    tok = TextTokenizer(spec.request.tokenizer_file, max(seq for _, seq in spec.shapes))
    texts = ["a long and winding review of a film that is, on balance, worth the ticket price"] * 4
    return runner, tok, texts


def _serve() -> None:
    """Child side of ``BuildProcess``: warm up, then time blocks until asked to stop."""
    from workbench.evaluate.latency import fixed_shape_feed

    spec = from_dict(LatencySpec, json.loads(sys.stdin.readline()))
    runner, tok, texts = _open(spec)
    batch, seq = spec.shapes[0]
    with runner:
        feed = runner.validate_feed(fixed_shape_feed(texts, tok, batch, seq))
        runner.infer_validated(feed)  # first run: allocations, kernel choice
        t0 = time.perf_counter_ns()
        for _ in range(spec.warmup):
            runner.infer_validated(feed)
        run_ms = (time.perf_counter_ns() - t0) / 1e6 / spec.warmup
        print(MARK + json.dumps({"run_ms": run_ms}), flush=True)
        for line in sys.stdin:
            runs = int(line)
            if runs <= 0:
                break
            c0, w0 = time.process_time_ns(), time.perf_counter_ns()
            for _ in range(runs):
                runner.infer_validated(feed)
            w1, c1 = time.perf_counter_ns(), time.process_time_ns()
            print(MARK + json.dumps({"wall_ns": w1 - w0, "cpu_ns": c1 - c0}), flush=True)


def _child(spec: LatencySpec) -> dict[str, object]:
    from workbench.evaluate.latency import fixed_shape_feed, measure_latency
    from workbench.evaluate.memory import peak_rss_mb

    runner, tok, texts = _open(spec)
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
    if sys.argv[1:] == ["--serve"]:
        _serve()
        sys.exit(0)
    print(json.dumps(_child(from_dict(LatencySpec, json.loads(sys.argv[1])))))
