"""A/B deployment gate over result records: policy, paired statistics, decision, outputs.

Example::

    from workbench.gate import evaluate_gate, load_policy, write_gate_outputs

    decision = evaluate_gate("reports/r1", "ort-fp32", "reports/r1", "ort-int8-dynamic",
                             load_policy("gate.toml"))
    write_gate_outputs(decision, "reports/r1")
"""

from workbench.gate.accuracy import Labelled
from workbench.gate.decision import Parties, evaluate_gate, judge, judge_labelled
from workbench.gate.outputs import write_gate_outputs
from workbench.gate.policy import GatePolicy, load_policy, parse_policy
from workbench.results.gate import GateCheck, GateDecision, load_decision

__all__ = [
    "GateCheck",
    "GateDecision",
    "GatePolicy",
    "Labelled",
    "Parties",
    "evaluate_gate",
    "judge",
    "judge_labelled",
    "load_decision",
    "load_policy",
    "parse_policy",
    "write_gate_outputs",
]
