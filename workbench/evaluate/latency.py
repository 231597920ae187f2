"""CPU latency: warm-up, many timed runs with ``perf_counter_ns``, percentiles.

GPU timing (CUDA events, copies in/out of the timed region) lives with the GPU
backends; both produce the same ``LatencyResult`` record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from workbench.backends.base import Feed, Runner
from workbench.errors import ConfigError
from workbench.results.records import LatencyResult


def fixed_shape_feed(
    texts: Sequence[str], tokenizer: object, batch_size: int, seq_len: int
) -> Feed:
    """A feed of exactly (batch_size, seq_len) made from real texts (repeated if too few)."""
    if not texts:
        raise ConfigError("latency needs at least one text to build a feed")
    picked = [texts[i % len(texts)] for i in range(batch_size)]
    feed = tokenizer.encode(picked, pad_to=seq_len)  # type: ignore[attr-defined]
    if feed["input_ids"].shape[1] != seq_len:
        raise ConfigError(f"seq_len {seq_len} exceeds the tokenizer's max_length")
    # Fill every position so the measured work is the full (batch, seq) shape.
    if "attention_mask" in feed:  # the tokenizer makes exactly the model's inputs
        feed["attention_mask"][:] = 1
    return feed


def summarize_ms(
    samples_ms: np.ndarray,
    batch_size: int,
    seq_len: int,
    warmup: int,
    includes_copies: bool,
    timer: str,
) -> LatencyResult:
    """Percentiles and throughput of latency samples (ms) as a record."""
    p50, p90, p99 = (float(x) for x in np.percentile(samples_ms, [50, 90, 99]))
    return LatencyResult(
        batch_size=batch_size,
        seq_len=seq_len,
        iterations=len(samples_ms),
        warmup=warmup,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(np.mean(samples_ms)),
        throughput_seq_per_s=batch_size / (p50 / 1e3) if p50 > 0 else float("nan"),
        includes_host_device_copies=includes_copies,
        timer=timer,
        samples_ms=[round(float(x), 4) for x in samples_ms],
    )


def measure_latency(
    runner: Runner,
    feed: Feed,
    iterations: int = 50,
    warmup: int = 5,
    max_seconds: float | None = None,
) -> LatencyResult:
    """Time ``runner.infer(feed)``: ``warmup`` untimed runs, then ``iterations`` timed ones."""
    if iterations < 1 or warmup < 0:
        raise ConfigError("iterations must be >= 1 and warmup >= 0")
    feed = runner.validate_feed(feed)
    for _ in range(warmup):
        runner.infer_validated(feed)
    samples = []
    start = time.perf_counter_ns()
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        runner.infer_validated(feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        if max_seconds is not None and (time.perf_counter_ns() - start) / 1e9 > max_seconds:
            break
    batch, seq = feed["input_ids"].shape
    return summarize_ms(np.asarray(samples), int(batch), int(seq), warmup, False, "perf_counter_ns")
