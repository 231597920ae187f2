"""Gate policy: the limits a candidate build must meet, read from TOML with field-level errors.

Example ``gate.toml``::

    metric = "accuracy"
    max_accuracy_drop = 0.01      # absolute: 0.01 = 1 point
    confidence = 0.95
    min_samples = 500
    min_prediction_agreement = 0.98
    min_speedup = 1.5
    max_p99_ms = 25.0
    latency_batch = 1
    latency_seq = 128
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from workbench.errors import ConfigError

METRICS = ("accuracy", "macro_f1")
MIN_RESAMPLES = 2000
RULE_FIELDS = (
    "max_accuracy_drop",
    "min_prediction_agreement",
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
    fail_on_significant_drop: bool = False  # also fail when McNemar finds a significant drop
    min_speedup: float | None = None  # baseline p50 / candidate p50 at the latency shape
    speedup_baseline: str | None = None  # build of the baseline run to time against
    max_p99_ms: float | None = None
    max_peak_memory_mb: float | None = None
    latency_batch: int = 1
    latency_seq: int = 128

    def __post_init__(self) -> None:
        _validate(self, "policy")


# field -> (kind, lower, upper, lower_inclusive, upper_inclusive, hint)
_NUMERIC: dict[str, tuple[type, float, float, bool, bool, str]] = {
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
    "min_speedup": (float, 0.0, math.inf, False, False, "a positive ratio such as 1.5"),
    "max_p99_ms": (float, 0.0, math.inf, False, False, "a positive number of milliseconds"),
    "max_peak_memory_mb": (float, 0.0, math.inf, False, False, "a positive number of MB"),
    "latency_batch": (int, 1, 1 << 20, True, True, "a batch size of at least 1"),
    "latency_seq": (int, 1, 1 << 20, True, True, "a sequence length of at least 1"),
}


def _validate(policy: Any, source: str) -> None:
    for name, (kind, lo, hi, lo_inc, hi_inc, hint) in _NUMERIC.items():
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


def parse_policy(data: dict[str, Any], source: str = "policy") -> GatePolicy:
    """Build a GatePolicy from a TOML table; unknown keys get a did-you-mean error."""
    known = {f.name for f in fields(GatePolicy)}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(known)}"
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        if isinstance(value, dict | list):
            raise ConfigError(f"{source}: {key} must be a single value, not a table or array")
    kwargs = dict(data)
    # TOML writes ``1`` for 1.0; accept ints where a float is meant.
    for name, (kind, *_rest) in _NUMERIC.items():
        v = kwargs.get(name)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            kwargs[name] = float(v)
    merged = {f.name: kwargs.get(f.name, f.default) for f in fields(GatePolicy)}
    _validate(SimpleNamespace(**merged), source)  # errors name the file, not "policy"
    return GatePolicy(**merged)


def load_policy(path: str | Path) -> GatePolicy:
    """Read and validate a TOML gate policy; see docs/gate.example.toml."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"policy file {p} does not exist; copy docs/gate.example.toml and edit it"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy file {p} cannot be read ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML ({exc}); fix the syntax at that line") from exc
    if "gate" in data and isinstance(data["gate"], dict) and len(data) == 1:
        data = data["gate"]  # allow a [gate] table as well as top-level keys
    return parse_policy(data, source=str(p))
