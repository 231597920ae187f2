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
import tomllib
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from workbench.errors import ConfigError
from workbench.results.policy import NUMERIC_FIELDS, GatePolicy, validate_policy


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
    for name, (kind, *_rest) in NUMERIC_FIELDS.items():
        v = kwargs.get(name)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            kwargs[name] = float(v)
    merged = {f.name: kwargs.get(f.name, f.default) for f in fields(GatePolicy)}
    validate_policy(SimpleNamespace(**merged), source)  # errors name the file, not "policy"
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
