"""Report fixtures: a realistic demo run with a gate decision, rendered once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run_fixtures import make_demo_run
from workbench.gate import evaluate_gate, parse_policy, write_gate_outputs
from workbench.report import render_report

POLICY = {"max_accuracy_drop": 0.02, "min_speedup": 1.5, "max_p99_ms": 10.0, "min_samples": 200}


@pytest.fixture(scope="session")
def gated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo run whose gate.json says ort-int8-dynamic passed against ort-fp32 (read-only)."""
    d = tmp_path_factory.mktemp("report-runs") / "demo-run"
    make_demo_run(d)
    decision = evaluate_gate(d, "ort-fp32", d, "ort-int8-dynamic", parse_policy(POLICY))
    assert decision.passed
    write_gate_outputs(decision, d)
    return d


@pytest.fixture(scope="session")
def report_html(gated_run: Path) -> str:
    return render_report(gated_run).read_text(encoding="utf-8")
