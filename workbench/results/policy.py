"""Gate policy record: the limits a candidate build must meet (validated on construction).

It lives with the records because experiment specs and gate decisions both carry it;
``workbench.gate.policy`` reads it from TOML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from workbench.errors import ConfigError

METRICS = ("accuracy", "macro_f1")
MIN_RESAMPLES = 2000
RULE_FIELDS = (
    "max_accuracy_drop",
    "min_prediction_agreement",
    "max_recall_drop",
    "min_speedup",
    "max_p99_ms",
    "max_peak_memory_mb",
)


@dataclass(frozen=True)
class GatePolicy:
    """Limits for one A/B gate; ``None`` switches a rule off (at least one rule must be on)."""

    metric: str = "accuracy"
    max_accuracy_drop: float | None = None  # absolute drop of ``metric`` (0.01 = 1 point)
    confidence: float = 0.95
    bootstrap_resamples: int = MIN_RESAMPLES
    seed: int = 0
    min_samples: int = 100
    min_prediction_agreement: float | None = None
    max_recall_drop: float | None = None  # per class: recall may fall at most this much
    fail_on_significant_drop: bool = False  # also fail when McNemar finds a significant drop
    min_speedup: float | None = None  # baseline p50 / candidate p50 at the latency shape
    speedup_baseline: str | None = None  # build of the baseline run to time against
    max_p99_ms: float | None = None
    max_peak_memory_mb: float | None = None
    latency_batch: int = 1
    latency_seq: int = 128

    def __post_init__(self) -> None:
        validate_policy(self, "policy")


# field -> (kind, lower, upper, lower_inclusive, upper_inclusive, hint)
NUMERIC_FIELDS: dict[str, tuple[type, float, float, bool, bool, str]] = {
    "max_accuracy_drop": (
        float,
        0.0,
        1.0,
        True,
        False,
        "an absolute drop as a fraction (0.01 = 1 point), at least 0 and below 1",
    ),
    "confidence": (float, 0.5, 1.0, False, False, "a level such as 0.95, above 0.5 and below 1"),
    "bootstrap_resamples": (
        int,
        MIN_RESAMPLES,
        10_000_000,
        True,
        True,
        f"a whole number of resamples, at least {MIN_RESAMPLES}",
    ),
    "seed": (int, 0, 2**63 - 1, True, True, "a non-negative integer"),
    "min_samples": (int, 1, 10**12, True, True, "a whole number of test samples, at least 1"),
    "min_prediction_agreement": (float, 0.0, 1.0, True, True, "a share between 0 and 1"),
    "max_recall_drop": (float, 0.0, 1.0, True, False, "an absolute recall drop such as 0.02"),
    "min_speedup": (float, 0.0, math.inf, False, False, "a positive ratio such as 1.5"),
    "max_p99_ms": (float, 0.0, math.inf, False, False, "a positive number of milliseconds"),
    "max_peak_memory_mb": (float, 0.0, math.inf, False, False, "a positive number of MB"),
    "latency_batch": (int, 1, 1 << 20, True, True, "a batch size of at least 1"),
    "latency_seq": (int, 1, 1 << 20, True, True, "a sequence length of at least 1"),
}


def validate_policy(policy: Any, source: str) -> None:
    for name, (kind, lo, hi, lo_inc, hi_inc, hint) in NUMERIC_FIELDS.items():
        value = getattr(policy, name)
        if value is None and name in RULE_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {name} = {value!r} is not a number; set it to {hint}")
        if kind is int and not isinstance(value, int):
            raise ConfigError(f"{source}: {name} = {value!r} must be {hint}")
        ok_lo = value >= lo if lo_inc else value > lo
        ok_hi = value <= hi if hi_inc else value < hi
        if not (math.isfinite(value) and ok_lo and ok_hi):
            raise ConfigError(f"{source}: {name} = {value!r} is out of range; set it to {hint}")
    if policy.metric not in METRICS:
        raise ConfigError(
            f"{source}: metric = {policy.metric!r} is not supported; use one of "
            + ", ".join(repr(m) for m in METRICS)
        )
    if not isinstance(policy.fail_on_significant_drop, bool):
        raise ConfigError(f"{source}: fail_on_significant_drop must be true or false")
    sb = policy.speedup_baseline
    if sb is not None and (not isinstance(sb, str) or not sb.strip()):
        raise ConfigError(f"{source}: speedup_baseline must be a build name such as 'ort-fp32'")
    if sb is not None and policy.min_speedup is None:
        raise ConfigError(f"{source}: speedup_baseline is set but min_speedup is not; set both")
    if all(getattr(policy, f) is None for f in RULE_FIELDS):
        raise ConfigError(
            f"{source}: the policy sets no rule; set at least one of " + ", ".join(RULE_FIELDS)
        )
