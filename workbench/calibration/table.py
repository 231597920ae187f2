"""CalibrationTable: tensor -> amax for one method, with the provenance that produced it.

Example::

    table = calibrate("model.onnx", calibset.batches(tok, 16), "entropy",
                      calibration_set_sha256=calibset.manifest_sha256,
                      open_runner=open_ort_runner)
    table.save(run_dir / "calibration_entropy.json")
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from workbench.calibration.methods import METHODS, compute_amax, unknown_method_message
from workbench.calibration.stats import TensorStats, collect_statistics
from workbench.calibration.tap import OpenRunner
from workbench.errors import CalibrationError, ConfigError, ResultsError
from workbench.fileio import atomic_write_json, sha256_file
from workbench.results.serde import from_dict, to_dict

log = logging.getLogger(__name__)

TABLE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CalibrationTable:
    """Symmetric INT8 ranges (``amax``: the range is [-amax, amax]) per tensor, and their origin."""

    amax: dict[str, float]
    method: str
    n_samples: int
    model_sha256: str  # "" when unknown (e.g. read from a TensorRT cache)
    calibration_set_sha256: str  # manifest hash of the calibration set ("" when unknown)
    num_bins: int = 2048
    source: str = "workbench"  # "workbench" | "tensorrt-cache"
    created_utc: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    schema_version: int = TABLE_SCHEMA_VERSION

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON atomically (tensor order kept)."""
        return atomic_write_json(path, to_dict(self))

    @classmethod
    def load(cls, path: str | Path) -> CalibrationTable:
        """Read a table written by ``save``; a missing or foreign file raises CalibrationError."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CalibrationError(f"calibration table {p} does not exist; run calibrate") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{p} is not a JSON calibration table ({exc})") from exc
        if not isinstance(data, dict) or "amax" not in data:
            raise CalibrationError(f"{p} is not a calibration table (no 'amax' field)")
        if data.get("schema_version", TABLE_SCHEMA_VERSION) != TABLE_SCHEMA_VERSION:
            raise CalibrationError(
                f"{p} has table schema {data.get('schema_version')}, this workbench reads "
                f"{TABLE_SCHEMA_VERSION}; recalibrate"
            )
        try:
            table = from_dict(cls, data)
        except ResultsError as exc:
            raise CalibrationError(f"{p}: {exc}") from exc
        bad = [n for n, a in table.amax.items() if not (np.isfinite(a) and a >= 0)]
        if bad:
            raise CalibrationError(f"{p}: amax of {bad[0]!r} is not a finite non-negative number")
        return table

    def check_model(self, onnx_path: str | Path) -> None:
        """Raise CalibrationError if the table records a different model than ``onnx_path``."""
        if self.model_sha256 and self.model_sha256 != sha256_file(onnx_path):
            raise CalibrationError(
                f"calibration table was made for model sha256 {self.model_sha256[:12]}, "
                f"{onnx_path} is a different model; recalibrate it"
            )


def tables_from_stats(
    stats: dict[str, TensorStats],
    methods: Sequence[str],
    model_sha256: str,
    calibration_set_sha256: str = "",
) -> dict[str, CalibrationTable]:
    """One table per method from statistics already collected (no model run)."""
    check_methods(methods)
    if not stats:
        raise CalibrationError("no statistics to compute ranges from")
    n_samples = max(s.n_samples for s in stats.values())
    num_bins = next(iter(stats.values())).num_bins
    out = {}
    for method in methods:
        t0 = time.perf_counter_ns()
        amax = {name: compute_amax(s, method) for name, s in stats.items()}
        log.info("%s: %d ranges in %.2f s", method, len(amax), (time.perf_counter_ns() - t0) / 1e9)
        out[method] = CalibrationTable(
            amax=amax,
            method=method,
            n_samples=n_samples,
            model_sha256=model_sha256,
            calibration_set_sha256=calibration_set_sha256,
            num_bins=num_bins,
        )
    return out


def check_methods(methods: Sequence[str]) -> None:
    if not methods:
        raise ConfigError(f"no calibration method given; choose from {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise ConfigError(unknown_method_message(m))


def calibrate_methods(
    onnx_path: str | Path,
    batches: Iterable[dict[str, np.ndarray]],
    methods: Sequence[str] = METHODS,
    calibration_set_sha256: str = "",
    num_bins: int = 2048,
    *,
    open_runner: OpenRunner,
) -> tuple[dict[str, CalibrationTable], dict[str, TensorStats]]:
    """One statistics pass (on the runner ``open_runner`` opens), then a table per method;
    also returns the statistics.

    Example::

        tables, stats = calibrate_methods("model.onnx", batches, ["entropy", "max"],
                                          open_runner=open_ort_runner)
    """
    check_methods(methods)
    stats = collect_statistics(onnx_path, batches, num_bins=num_bins, open_runner=open_runner)
    tables = tables_from_stats(stats, methods, sha256_file(onnx_path), calibration_set_sha256)
    return tables, stats


def calibrate(
    onnx_path: str | Path,
    batches: Iterable[dict[str, np.ndarray]],
    method: str = "entropy",
    calibration_set_sha256: str = "",
    *,
    open_runner: OpenRunner,
) -> CalibrationTable:
    """Calibrate ``onnx_path`` on ``batches`` with one method.

    Example::

        table = calibrate("model.onnx", (tok.encode(b) for b in text_batches), "percentile-99.99",
                          open_runner=open_ort_runner)
    """
    tables, _ = calibrate_methods(
        onnx_path, batches, [method], calibration_set_sha256, open_runner=open_runner
    )
    return tables[method]


def with_amax(table: CalibrationTable, amax: dict[str, float]) -> CalibrationTable:
    """A copy of ``table`` with other ranges (e.g. a subset)."""
    return replace(table, amax=dict(amax))
