"""What the builds did on unlabelled traffic: disagreements with the gate baseline, and labels.

Saved as ``traffic.json`` next to ``run.json``; per-build traffic predictions are Parquet
files under ``traffic/`` (like the test predictions), the disagreeing rows also go to
``disagreements.csv`` for a person to label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.results.records import load_record, save_record

TRAFFIC_FILE = "traffic.json"
TRAFFIC_DIR = "traffic"
DISAGREEMENTS_FILE = "disagreements.csv"


@dataclass(frozen=True)
class TrafficResult:
    """One build on the traffic rows, against the baseline build."""

    name: str
    baseline: str
    n: int  # traffic rows scored
    disagreements: int  # rows where the build's prediction differs from the baseline's
    disagreement_rate: float
    cp_upper: float  # one-sided Clopper–Pearson upper bound of the disagreement rate
    confidence: float  # of cp_upper
    labelled: int  # disagreements with a person's label (0 without disagreement labels)
    baseline_right: int  # among the labelled disagreements
    candidate_right: int
    predictions_file: str  # Parquet (idx, pred, logits), relative to the run directory


@dataclass(frozen=True)
class DisagreementRow:
    """A traffic row where some gated build disagrees with the baseline."""

    idx: int  # row in the traffic file (after dropping empty and repeated texts)
    text: str
    predictions: dict[str, str]  # build name -> predicted label name
    label: str  # a person's label name ("" until disagreement labels are given)


@dataclass(frozen=True)
class TrafficRecord:
    """Every build's traffic predictions, summarised; the gate's and report's traffic input."""

    schema_version: int
    source: str  # the [data] unlabeled file
    source_sha256: str
    n: int
    baseline: str
    labels: list[str]  # label names in logit order
    builds: list[TrafficResult]
    disagreements: list[DisagreementRow]
    disagreements_file: str  # relative to the run directory
    labels_file: str  # the filled-in disagreements file that was applied ("" none)

    def build(self, name: str) -> TrafficResult | None:
        """The traffic result of build ``name`` (None if it was not scored on traffic)."""
        return next((b for b in self.builds if b.name == name), None)


def save_traffic(record: TrafficRecord, run_dir: str | Path) -> Path:
    """Write ``traffic.json`` into the run directory."""
    return save_record(record, Path(run_dir) / TRAFFIC_FILE)


def load_traffic_record(run_dir: str | Path) -> TrafficRecord | None:
    """``traffic.json`` of a run directory, or None when the run had no unlabelled traffic."""
    p = Path(run_dir) / TRAFFIC_FILE
    return load_record(TrafficRecord, p) if p.is_file() else None
