"""Policy TOML: the shipped example loads; every bad field gets an error naming it and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.gate import GatePolicy, load_policy, parse_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "gate.example.toml"


def test_example_policy_loads():
    p = load_policy(EXAMPLE)
    assert p.metric == "accuracy" and p.max_accuracy_drop == 0.01 and p.min_speedup == 1.5
    assert p.bootstrap_resamples >= 2000 and p.latency_batch == 1 and p.latency_seq == 128


def test_gate_table_and_int_for_float(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text("[gate]\nmax_p99_ms = 20\nmin_speedup = 2\n")
    p = load_policy(f)
    assert p.max_p99_ms == 20.0 and isinstance(p.max_p99_ms, float) and p.min_speedup == 2.0


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            {"max_acuracy_drop": 0.01},
            r"unknown key 'max_acuracy_drop'; did you mean 'max_accuracy_drop'",
        ),
        ({"max_accuracy_drop": 1.5}, r"max_accuracy_drop = 1.5 is out of range; .*0.01 = 1 point"),
        ({"max_accuracy_drop": "1%"}, r"max_accuracy_drop = '1%' is not a number"),
        ({"max_p99_ms": 5, "confidence": 1.0}, r"confidence = 1.0 is out of range"),
        (
            {"max_p99_ms": 5, "bootstrap_resamples": 500},
            r"bootstrap_resamples = 500 .* at least 2000",
        ),
        ({"max_p99_ms": 5, "min_samples": 10.5}, r"min_samples = 10.5 must be a whole number"),
        (
            {"max_p99_ms": 5, "metric": "f1"},
            r"metric = 'f1' is not supported; use one of 'accuracy'",
        ),
        ({"max_p99_ms": 5, "latency_batch": 0}, r"latency_batch = 0 is out of range"),
        ({"min_speedup": -1.0}, r"min_speedup = -1.0 is out of range"),
        ({"max_p99_ms": True}, r"max_p99_ms = True is not a number"),
        (
            {"max_p99_ms": 5, "speedup_baseline": "ort-fp32"},
            r"speedup_baseline is set but min_speedup",
        ),
        ({"max_p99_ms": 5, "fail_on_significant_drop": "yes"}, r"fail_on_significant_drop must be"),
        ({"confidence": 0.9}, r"the policy sets no rule; set at least one of max_accuracy_drop"),
        ({"max_p99_ms": [1, 2]}, r"max_p99_ms must be a single value"),
    ],
)
def test_field_level_errors(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_policy(data, source="gate.toml")


def test_errors_name_the_file(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text("max_accuracy_drop = 2\n")
    with pytest.raises(ConfigError, match=r"g\.toml: max_accuracy_drop = 2.0 is out of range"):
        load_policy(f)


def test_bad_toml_and_missing_file(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text("max_accuracy_drop = = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_policy(f)
    with pytest.raises(ConfigError, match=r"does not exist; copy docs/gate\.example\.toml"):
        load_policy(tmp_path / "absent.toml")


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="policy: confidence"):
        GatePolicy(max_p99_ms=1.0, confidence=0.2)
