"""Gate a run's candidates against its baseline with the experiment's policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError
from workbench.results.spec import Experiment

if TYPE_CHECKING:
    from workbench.results.gate import GateDecision


def gate_run(run_dir: Path, exp: Experiment) -> list[GateDecision]:
    """Gate every candidate; writes gate.json/gate.md/gate-junit.xml (the first candidate's
    under those names, further candidates under ``gate-<name>.*``). Returns the decisions."""
    from workbench.gate import evaluate_gate, write_gate_outputs

    g = exp.gate
    if g.policy is None:
        raise ConfigError("no gate policy configured; set [gate] policy")
    decisions = []
    for i, cand in enumerate(g.candidates):
        decision = evaluate_gate(run_dir, g.baseline, run_dir, cand, g.policy)
        out = run_dir if i == 0 else run_dir / f"gate-{cand}"
        write_gate_outputs(decision, out)
        decisions.append(decision)
    return decisions
