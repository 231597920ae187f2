"""The representativeness record (``calibset_report.json``): a calibration set against a target.

``workbench.data.representativeness`` measures it; the calibration set's manifest carries it and
the HTML report renders it from here.

Example::

    from workbench.results.representativeness import load_report
    rep = load_report(run_dir)
    rep.verdict, rep.warnings
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.results.records import load_record, save_record

REPORT_FILE = "calibset_report.json"


@dataclass(frozen=True)
class LengthSummary:
    """Token-length summary of one sample (untruncated lengths, special tokens included)."""

    n: int
    mean: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    truncated_share: float  # share longer than max_length


@dataclass(frozen=True)
class RepresentativenessReport:
    """A calibration set compared with a target sample; written as ``calibset_report.json``."""

    schema_version: int
    calibration_set: str  # calibration set directory ("" if not saved)
    manifest_sha256: str  # of the set's manifest ("" if not saved)
    target: str  # where the target came from: a file path or e.g. "test split"
    max_length: int
    verdict: str  # one of VERDICTS
    warnings: list[str]  # one line per failed check; empty when representative
    thresholds: dict[str, float]
    length_psi: float
    length_ks_statistic: float
    length_ks_pvalue: float
    length_bin_edges: list[float]  # inner edges (target deciles); bin i is (e[i-1], e[i]]
    calibration_bin_share: list[float]
    target_bin_share: list[float]
    calibration_lengths: LengthSummary
    target_lengths: LengthSummary
    label_names: list[str]
    calibration_label_share: list[float] | None  # None when either side is unlabelled
    target_label_share: list[float] | None
    label_tv_distance: float | None
    label_js_distance: float | None  # Jensen–Shannon distance, base 2 (0..1)
    vocab_token_coverage: float | None  # target token occurrences whose id occurs in the set
    vocab_type_coverage: float | None  # distinct target ids that occur in the set
    vocab_token_coverage_reference: float | None  # what a same-size random target sample reaches
    calibration_unk_rate: float | None  # share of tokens that are [UNK]
    target_unk_rate: float | None
    profile_suggestion: dict[str, Any]  # TensorRT min/opt/max from the target's lengths


def calibset_report_path(run_dir: str | Path) -> Path:
    """Where a run directory keeps its representativeness record."""
    return Path(run_dir) / REPORT_FILE


def save_report(report: RepresentativenessReport, run_dir: str | Path) -> Path:
    """Write ``calibset_report.json`` into a run directory (atomically)."""
    return save_record(report, Path(run_dir) / REPORT_FILE)


def load_report(path: str | Path) -> RepresentativenessReport:
    """Read ``calibset_report.json`` (a run directory or the file itself)."""
    p = Path(path)
    return load_record(RepresentativenessReport, p / REPORT_FILE if p.is_dir() else p)
