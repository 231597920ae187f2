"""What ``workbench search`` found: every trial, the Pareto front and the verified choice."""

from __future__ import annotations

from dataclasses import dataclass

SEARCH_FILE = "search.json"


@dataclass(frozen=True)
class TrialRecord:
    """One scored candidate (latency NaN where it was not timed)."""

    kind: str  # "static" | "dynamic"
    graph: str  # "plain" | "fused"
    recovery: list[str]  # accuracy-recovery options applied (e.g. "smoothquant-0.5")
    method: str  # calibration method ("dynamic" for dynamic builds)
    per_channel: bool
    float_nodes: list[str]  # ONNX node names kept in float
    float_modules: list[str]  # the same, as module paths
    passed: bool  # on the search split
    accuracy: float  # on the search split
    latency_ms: float  # p50 at the gate's shape, ONNX Runtime on this machine
    stage: str  # "start" | "greedy" | "prune"


@dataclass(frozen=True)
class GateCheckOnSplit:
    """The chosen build judged on the gate split, which the search never saw, by the gate's
    own judge: its verdict, and the messages of the checks that did not pass (an inconclusive
    one says how many rows would settle it)."""

    n: int
    fp32_accuracy: float
    accuracy: float
    drop_ci_low: float  # paired bootstrap 95% CI of accuracy - FP32 accuracy
    drop_ci_high: float
    agreement: float
    passed: bool  # verdict == "PASS"
    reasons: list[str]
    verdict: str  # "PASS" | "FAIL" | "INCONCLUSIVE"


@dataclass(frozen=True)
class TrafficCheckOnSplit:
    """The chosen build certified on held-out unlabelled traffic the search never saw."""

    n_search: int  # traffic rows the search ranked and scored candidates on
    n_heldout: int  # traffic rows kept for this check
    disagreements: int  # held-out rows where the choice disagrees with FP32
    cp_upper: float  # one-sided Clopper–Pearson bound on the disagreement rate
    status: str  # "pass" | "inconclusive" (unlabelled evidence never fails a build)
    message: str


@dataclass(frozen=True)
class SearchRecord:
    """A search over calibration method, weight granularity and layers kept in float."""

    schema_version: int
    experiment: str
    model_onnx_sha256: str
    ranking_kind: str  # "proxy" (SQNR, one FP32 pass) or "task" (per-layer builds)
    ranking: list[str]  # module paths, most harmful first
    n_search: int
    n_gate: int
    latency_shape: list[int]  # [batch, seq]
    fp32_latency_ms: float
    trials: list[TrialRecord]
    pareto: list[TrialRecord]
    best: TrialRecord | None
    gate_check: GateCheckOnSplit | None
    traffic_check: TrafficCheckOnSplit | None  # with [data] unlabeled traffic, else None
    exclude: list[str]  # the [calibration] exclude entry for the best build
    files: list[str]  # artifacts written next to search.json
    seconds: float
    configurations: list[str]  # every (kind, graph, method, weights, recovery) searched
    not_searched: list[str]  # what was not searched, and why
