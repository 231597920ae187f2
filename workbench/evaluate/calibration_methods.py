"""Compare calibration methods side by side from one statistics pass.

For each method: a table, a TensorRT cache and a Q/DQ model, evaluated on the test
split (accuracy, agreement with FP32, logit error); for each tensor: every method's
threshold, the share of values it clips and the SQNR of fake-quantized vs FP32
activations on test samples; for the most sensitive tensors: a 128-bin histogram.
The result is ``calibration_comparison.json`` (see ``records.py``).

Example::

    cmp = compare_methods("model.onnx", calib.batches(tok, 16), test_feeds, test_labels,
                          run_dir, methods=["entropy", "percentile-99.99", "max", "mse"])
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.graph import QUANTIZED_OPS, load_onnx
from workbench.calibration.methods import fake_quant, sqnr_db
from workbench.calibration.stats import TensorStats
from workbench.calibration.table import CalibrationTable, check_methods, tables_from_stats
from workbench.calibration.tap import ActivationTap
from workbench.calibration.trt_cache import write_trt_cache
from workbench.errors import DataError
from workbench.evaluate.scorer import model_logits
from workbench.fileio import sha256_file
from workbench.results.calibration import (
    COMPARISON_FILE,
    CalibrationComparison,
    MethodComparison,
    TensorComparison,
    TensorHistogram,
)
from workbench.results.records import SCHEMA_VERSION, save_record

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
DEFAULT_METHODS = (
    "entropy",
    "percentile-99.9",
    "percentile-99.99",
    "percentile-99.999",
    "max",
    "mse",
)
N_SENSITIVE = 12
HIST_BINS = 128
OUT_DIR = "calibration"


def compare_methods(
    fp32_onnx: str | Path,
    calibration_batches: Iterable[Feed],
    test_feeds: Sequence[Feed],
    test_labels: Sequence[int] | np.ndarray,
    run_dir: str | Path,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    labels: Sequence[str] = (),
    calibration_set_sha256: str = "",
    test_set_sha256: str = "",
    per_channel: bool = False,
    exclude: Sequence[str] = (),
    sqnr_samples: int = 128,
    trt_version: str = "10.16.1",
    statistics: dict[str, TensorStats] | None = None,
    statistics_seconds: float | None = None,
    cache_dir: str | Path | None = None,
) -> CalibrationComparison:
    """Calibrate with every method, evaluate each Q/DQ model, write the comparison record.

    Pass ``statistics`` already collected on the calibration set to skip a second pass, with
    the wall time that pass took (``statistics_seconds``), so the record shows the real cost.
    Each method's Q/DQ model is the very file the static INT8 build of that table runs: it lives
    once in the content-addressed cache (``cache_dir``, default ``$WORKBENCH_CACHE/builds``) and
    the record refers to it by absolute path and sha256."""
    from workbench.fileio import cache_root
    from workbench.provenance import collect_provenance

    check_methods(methods)
    run_dir = Path(run_dir)
    y = np.asarray(test_labels, dtype=np.int64)
    if not test_feeds or y.size == 0:
        raise DataError("the test set is empty; a comparison needs labelled test samples")
    t0 = time.perf_counter_ns()
    if statistics is None:
        tables, stats = _calibrate(fp32_onnx, calibration_batches, methods, calibration_set_sha256)
    else:
        stats = statistics
        tables = tables_from_stats(stats, methods, sha256_file(fp32_onnx), calibration_set_sha256)
    stats_s = (time.perf_counter_ns() - t0) / 1e9
    if statistics is not None and statistics_seconds is not None:
        stats_s = statistics_seconds
    models = Path(cache_dir) if cache_dir is not None else cache_root() / "builds"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fp32_logits = _logits(fp32_onnx, test_feeds)
    if fp32_logits.shape[0] != y.size:
        raise DataError(f"{y.size} test labels for {fp32_logits.shape[0]} test samples")
    sqnr, n_sqnr = _sqnr(fp32_onnx, list(stats), test_feeds, tables, sqnr_samples)
    consumers = _consumers(fp32_onnx)
    tensors = [_tensor_row(s, tables, sqnr[n], consumers.get(n, [])) for n, s in stats.items()]
    results = []
    for method in methods:
        files = _write_artifacts(
            fp32_onnx, tables[method], run_dir, (per_channel, tuple(exclude)), trt_version, models
        )
        q_logits = _logits(files[2], test_feeds)
        results.append(_method_row(method, files, q_logits, fp32_logits, y, tensors))
        log.info(
            "%s: accuracy %.4f, agreement %.4f", method, results[-1].accuracy, results[-1].agreement
        )
    ranked = sorted(tensors, key=lambda t: (-_finite(t.sensitivity_db), t.name))
    record = CalibrationComparison(
        schema_version=SCHEMA_VERSION,
        model_path=str(fp32_onnx),
        model_sha256=next(iter(tables.values())).model_sha256,
        calibration_set_sha256=calibration_set_sha256,
        n_calibration_samples=next(iter(tables.values())).n_samples,
        test_set_sha256=test_set_sha256,
        n_test=int(y.size),
        labels=list(labels),
        fp32_accuracy=float(np.mean(fp32_logits.argmax(axis=1) == y)),
        methods=results,
        best_method=best_method(results),
        all_tensors=tensors,
        sensitive_tensors=[_histogram(stats[t.name], t) for t in ranked[:N_SENSITIVE]],
        sqnr_samples=n_sqnr,
        per_channel=per_channel,
        exclude=list(exclude),
        statistics_seconds=stats_s,
        statistics_peak_rss_mb=rss_mb,
        provenance=collect_provenance(),
    )
    save_record(record, run_dir / COMPARISON_FILE)
    return record


def best_method(results: Sequence[MethodComparison]) -> str:
    """The method the gate would rather ship: highest agreement with FP32 (the gate's
    ``min_prediction_agreement`` rule), then highest accuracy (its accuracy-change rule),
    then highest mean SQNR."""
    return max(results, key=lambda r: (r.agreement, r.accuracy, _finite(r.sqnr_db_mean))).method


def _calibrate(onnx_path, batches, methods, calset_sha):
    from workbench.calibration.stats import collect_statistics

    stats = collect_statistics(onnx_path, batches, open_runner=open_ort_runner)
    return tables_from_stats(stats, methods, sha256_file(onnx_path), calset_sha), stats


def _finite(x: float) -> float:
    return x if math.isfinite(x) else (1e9 if x > 0 else -1e9)


def _logits(onnx_path: str | Path, feeds: Sequence[Feed]) -> np.ndarray:
    """First output over ``feeds`` through the one scorer, on the CPU (as the record has been)."""
    return model_logits(onnx_path, feeds, device="cpu")


def _consumers(onnx_path: str | Path) -> dict[str, list[str]]:
    model = load_onnx(onnx_path, load_external_data=False)
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            for name in node.input[:2]:
                out.setdefault(name, []).append(node.name)
    return out


def _sqnr(
    onnx_path: str | Path,
    names: list[str],
    feeds: Sequence[Feed],
    tables: dict[str, CalibrationTable],
    max_samples: int,
) -> tuple[dict[str, dict[str, float]], int]:
    """Per tensor and method: SQNR of fake-quantized vs FP32 values on the first test samples."""
    signal = dict.fromkeys(names, 0.0)
    noise = {n: dict.fromkeys(tables, 0.0) for n in names}
    seen = 0
    with ActivationTap(onnx_path, names, open_runner=open_ort_runner) as tap:
        for feed in feeds:
            if seen >= max_samples:
                break
            take = min(len(next(iter(feed.values()))), max_samples - seen)
            for act in tap.run({k: v[:take] for k, v in feed.items()}):
                x = act.values
                signal[act.name] += float(np.dot(x, x))
                for method, table in tables.items():
                    err = x - fake_quant(x, table.amax[act.name])
                    noise[act.name][method] += float(np.dot(err, err))
            seen += take
    out = {n: {m: sqnr_db(signal[n], noise[n][m]) for m in tables} for n in names}
    return out, seen


def _clipped(s: TensorStats, amax: float) -> float:
    """Share of values above ``amax`` (bins wholly above it; the bin holding amax is kept)."""
    if s.count == 0:
        return 0.0
    first = math.floor(amax / s.bin_width) + 1
    return float(s.hist[first:].sum()) / float(s.count)


def _tensor_row(
    s: TensorStats,
    tables: dict[str, CalibrationTable],
    sqnr: dict[str, float],
    consumers: list[str],
) -> TensorComparison:
    finite = [v for v in sqnr.values() if math.isfinite(v)]
    return TensorComparison(
        name=s.name,
        consumers=consumers,
        count=s.count,
        absmax=s.absmax,
        amax={m: t.amax[s.name] for m, t in tables.items()},
        sqnr_db=sqnr,
        clipped_fraction={m: _clipped(s, t.amax[s.name]) for m, t in tables.items()},
        sensitivity_db=(max(finite) - min(finite)) if finite else 0.0,
    )


def _histogram(s: TensorStats, row: TensorComparison) -> TensorHistogram:
    group = max(1, s.num_bins // HIST_BINS)
    counts = s.hist.reshape(-1, group).sum(axis=1)
    nonzero = np.nonzero(counts)[0]
    counts = counts[: int(nonzero[-1]) + 1] if nonzero.size else counts[:1]
    width = s.bin_width * group
    return TensorHistogram(
        name=s.name,
        counts=[int(c) for c in counts],
        edges=[float(k * width) for k in range(counts.size + 1)],
        bin_width=float(width),
        absmax=s.absmax,
        amax=dict(row.amax),
        sqnr_db=dict(row.sqnr_db),
        sensitivity_db=row.sensitivity_db,
    )


def _write_artifacts(
    fp32_onnx, table: CalibrationTable, run_dir: Path, options, trt_version, models: Path
) -> tuple[str, str, str]:
    """The table and TensorRT cache (small) in the run; the Q/DQ model in the cache, as the
    ONNX Runtime static build writes it (one Q/DQ pair per consumer)."""
    from workbench.backends.onnxruntime.backend import qdq_model

    base = f"{OUT_DIR}/{table.method}"
    table.save(run_dir / f"{base}.json")
    write_trt_cache(table, run_dir / f"{base}.calib", trt_version=trt_version)
    model = qdq_model(fp32_onnx, table, options[0], options[1], models)
    return f"{base}.json", f"{base}.calib", str(model)


def _method_row(
    method: str, files, q: np.ndarray, ref: np.ndarray, y: np.ndarray, tensors
) -> MethodComparison:
    cos = (q * ref).sum(axis=1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    sq = [t.sqnr_db[method] for t in tensors if math.isfinite(t.sqnr_db[method])]
    return MethodComparison(
        method=method,
        table_file=files[0],
        trt_cache_file=files[1],
        qdq_model_file=files[2],
        qdq_model_sha256=sha256_file(files[2]),
        n_test=int(y.size),
        accuracy=float(np.mean(q.argmax(axis=1) == y)),
        agreement=float(np.mean(q.argmax(axis=1) == ref.argmax(axis=1))),
        logit_max_abs_err=float(np.abs(q - ref).max()),
        logit_cosine_mean=float(cos.mean()),
        logit_cosine_min=float(cos.min()),
        sqnr_db_mean=float(np.mean(sq)) if sq else math.inf,
        sqnr_db_min=float(np.min(sq)) if sq else math.inf,
        clipped_fraction_mean=float(np.mean([t.clipped_fraction[method] for t in tensors])),
    )
