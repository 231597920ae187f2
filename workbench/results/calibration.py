"""The method comparison record (``calibration_comparison.json``) the HTML report draws from.

Everything the report needs is here, so it never recomputes: per-method accuracy
and FP32 agreement of each method's Q/DQ model, per-tensor thresholds and SQNR per
method, and down-sampled |x| histograms of the most sensitive tensors. Saved and
loaded with ``save_record`` / ``load_comparison`` (which also reads files written before
``qdq_model_sha256`` existed).

Example::

    from workbench.results.calibration import load_comparison
    cmp = load_comparison(run_dir)
    best = cmp.method(cmp.best_method)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ResultsError
from workbench.results.records import Provenance, load_record

COMPARISON_FILE = "calibration_comparison.json"
# The comparison carries the run schema's version (records.SCHEMA_VERSION); its own shape is the
# same in every version except qdq_model_sha256 (added during version 3, read as "" when absent).
# Version 4 changed only the run record (BuildResult.kernels). A run-schema bump must add its
# version here: tests/results/test_calibration.py fails otherwise.
READABLE_VERSIONS = (1, 2, 3, 4)


@dataclass(frozen=True)
class MethodComparison:
    """One method's ranges turned into a Q/DQ model and evaluated on the test split."""

    method: str  # "entropy", "percentile-99.99", "max", "mse", ...
    table_file: str  # CalibrationTable JSON, relative to the run directory
    trt_cache_file: str  # TensorRT calibration cache, relative to the run directory
    qdq_model_file: str  # Q/DQ ONNX model: absolute path in the cache (relative to the run
    # directory when the run kept its models, --keep-models)
    qdq_model_sha256: str
    n_test: int
    accuracy: float  # of the Q/DQ model on the test split (0..1)
    agreement: float  # share of test predictions equal to the FP32 model's (0..1)
    logit_max_abs_err: float  # vs FP32 logits
    logit_cosine_mean: float
    logit_cosine_min: float
    sqnr_db_mean: float  # mean over tensors of TensorComparison.sqnr_db[method]
    sqnr_db_min: float
    clipped_fraction_mean: float  # mean over tensors of the share of values beyond amax


@dataclass(frozen=True)
class TensorComparison:
    """One calibrated tensor under every method."""

    name: str
    consumers: list[str]  # names of the MatMul/Gemm nodes that read it
    count: int  # calibration values seen (real tokens only)
    absmax: float
    amax: dict[str, float]  # method -> threshold
    sqnr_db: dict[str, float]  # method -> SQNR of fake-quantized vs FP32 values (test samples);
    # null in JSON (NaN when loaded) means no quantization noise at all
    clipped_fraction: dict[str, float]  # method -> share of calibration values with |x| > amax
    sensitivity_db: float  # max - min of sqnr_db over methods: how much the choice matters


@dataclass(frozen=True)
class TensorHistogram:
    """A down-sampled |x| histogram with each method's threshold, for one tensor."""

    name: str
    counts: list[int]  # |x| histogram, up to 128 bins from 0, trailing empty bins dropped
    edges: list[float]  # len(counts) + 1 bin edges: bin k is [edges[k], edges[k + 1])
    bin_width: float
    absmax: float
    amax: dict[str, float]  # method -> threshold (draw as vertical lines)
    sqnr_db: dict[str, float]  # method -> SQNR, as in TensorComparison
    sensitivity_db: float


@dataclass(frozen=True)
class CalibrationComparison:
    """Side-by-side comparison of calibration methods on one model, calibration set and test set."""

    schema_version: int
    model_path: str
    model_sha256: str
    calibration_set_sha256: str
    n_calibration_samples: int
    test_set_sha256: str
    n_test: int
    labels: list[str]
    fp32_accuracy: float
    methods: list[MethodComparison]  # in the order requested
    best_method: str  # highest agreement with FP32 (the gate's rule), then accuracy, SQNR
    all_tensors: list[TensorComparison]  # every calibrated tensor, graph order
    sensitive_tensors: list[TensorHistogram]  # the 12 most sensitive, most sensitive first
    sqnr_samples: int  # test samples whose activations the SQNR was measured on
    per_channel: bool
    exclude: list[str]
    statistics_seconds: float  # wall time of the one statistics pass over the calibration set
    statistics_peak_rss_mb: float  # process peak RSS after that pass
    provenance: Provenance

    def method(self, name: str) -> MethodComparison:
        """The result of method ``name``; a ResultsError lists the ones there are."""
        for m in self.methods:
            if m.method == name:
                return m
        have = ", ".join(m.method for m in self.methods)
        raise ResultsError(f"comparison has no method {name!r}; it has: {have}")


def comparison_path(run_dir: str | Path) -> Path:
    """Where a run directory keeps its comparison record."""
    return Path(run_dir) / COMPARISON_FILE


def load_comparison(path: str | Path) -> CalibrationComparison:
    """Read ``calibration_comparison.json`` (a run directory or the file itself); ResultsError if
    it is corrupt or of another shape. Older files (schema 1 and 2, and 3 before
    ``qdq_model_sha256``) read the missing hash as ""."""
    p = Path(path)
    path = comparison_path(p) if p.is_dir() else p
    return load_record(CalibrationComparison, path, upgrade=_upgrade, versions=READABLE_VERSIONS)


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    methods = data.get("methods")
    if not isinstance(methods, list):
        return data
    filled = [{"qdq_model_sha256": "", **m} if isinstance(m, dict) else m for m in methods]
    return {**data, "methods": filled}
