"""The calibration stage of a run: calibration set -> one statistics pass -> a table per method.

Tables and the method comparison are cached by content hash (model, calibration set,
methods; plus test set and Q/DQ options for the comparison), so a second run, or a
run restarted after a kill, collects no statistics at all.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.fileio import (
    cache_root,
    partial_dir,
    publish_entry,
    reuse_entry,
    sha256_json,
)
from workbench.results.records import SCHEMA_VERSION, CalibrationSummary

if TYPE_CHECKING:
    from workbench.backends.base import Feed
    from workbench.data.calibset import CalibrationSet
    from workbench.experiment.progress import Stages
    from workbench.experiment.workspace import Workspace

log = logging.getLogger(__name__)

TABLES_VERSION = 3  # 2: sealed cache entries; 3: keyed by the set's content key
TABLE_FILE = "calibration_table.json"
BATCH = 16


@dataclass(frozen=True)
class CalibrationOutcome:
    """The calibration set, the chosen method's table (a cached file) and the run's summary."""

    calib_set: CalibrationSet
    table_file: str
    summary: CalibrationSummary
    tokenizer_file: str
    max_length: int
    fp8_table_file: str  # FP8-grid table ("" when no FP8 build asked for one)

    def feeds(self) -> Callable[[], Iterable[Feed]]:
        """A fresh iterator over the calibration batches each time it is called."""
        from workbench.data.tokenize import TextTokenizer

        tok = TextTokenizer(self.tokenizer_file, self.max_length)
        return lambda: self.calib_set.batches(tok, batch_size=BATCH)


def prepare_calibration(
    ws: Workspace,
    run_dir: Path,
    root: str,
    st: Stages,
    compare: bool = True,
    fp8: bool = False,
) -> CalibrationOutcome:
    """Build (or reuse) the calibration set, a table for the method and for every method in
    ``[calibration] compare`` (plus the FP8-grid table when ``fp8``), and (when ``compare``)
    the side-by-side comparison. One statistics pass serves every table."""
    with st.stage("calibration set"):
        calib = _calibration_set(ws, run_dir, root)
    c = ws.exp.calibration
    methods = list(dict.fromkeys([c.method, *c.compare]))
    onnx = ws.export.onnx_path
    key = sha256_json(
        {
            "onnx": ws.export.onnx_sha256,
            # the set's content key (source, pool, n, strategy, seed, tokenizer): sets named
            # after different experiments (sweep cells) with the same rows share their tables
            "set": calib.manifest.key,
            "methods": sorted(methods),
            "fp8": c.fp8_method if fp8 else None,
            "v": TABLES_VERSION,
        }
    )[:16]
    tables_dir = cache_root() / "tables" / key
    fp8_file = tables_dir / f"fp8-{c.fp8_method}.json"
    stats, stats_s = None, None
    if not reuse_entry(tables_dir, "calibration tables"):
        t0 = time.perf_counter()
        with st.stage("calibration statistics") as bar:
            stats = _collect(onnx, calib, ws, st.callback(bar))
        stats_s = time.perf_counter() - t0
        from workbench.calibration.fp8 import fp8_tables_from_stats
        from workbench.calibration.table import tables_from_stats

        sha, cs = ws.export.onnx_sha256, calib.manifest_sha256
        tables = tables_from_stats(stats, methods, sha, cs)
        if fp8:
            tables.update(fp8_tables_from_stats(stats, [c.fp8_method], sha, cs))
        partial = partial_dir(tables_dir)
        for m, table in tables.items():
            table.save(partial / f"{m}.json")
        publish_entry(partial, tables_dir)
    table_file = tables_dir / f"{c.method}.json"
    shutil.copyfile(table_file, run_dir / TABLE_FILE)
    if c.compare and compare:
        with st.stage("compare calibration methods"):
            _compare(ws, calib, run_dir, key, (stats, stats_s))
    summary = CalibrationSummary(
        calibration_set=str(calib.dir),
        manifest_sha256=calib.manifest_sha256,
        n_samples=len(calib),
        method=f"{c.calibrator}:{c.method}",
        table_file=TABLE_FILE,
    )
    return CalibrationOutcome(
        calib,
        str(table_file),
        summary,
        ws.model.tokenizer_file,
        ws.exp.data.max_length,
        str(fp8_file) if fp8 else "",
    )


def _calibration_set(ws: Workspace, run_dir: Path, root: str) -> CalibrationSet:
    """Sample the set; its representativeness vs the traffic (else the test split) goes into the
    manifest and into the run directory for the report."""
    from workbench.data.calibset import build_calibration_set, with_report
    from workbench.data.representativeness import TextProfile
    from workbench.experiment.rundir import calibration_set_name
    from workbench.results.representativeness import save_report

    target = TextProfile.from_texts(ws.texts, ws.tokenizer, ws.test["label"])
    target_name = "test split"
    if ws.traffic is not None:  # production text is the distribution to calibrate for
        target = TextProfile.from_texts(ws.traffic_texts, ws.tokenizer)
        target_name = f"unlabelled traffic ({Path(ws.traffic.source_path).name})"
    c = ws.exp.calibration
    seed = ws.exp.seed if c.seed is None else c.seed
    calib = build_calibration_set(
        ws.pool,
        c.n,
        ws.tokenizer,
        strategy=c.strategy,
        seed=seed,
        root=root,
        name=calibration_set_name(ws.exp, c.n, c.strategy, seed),
        source_path=ws.source_path,
        source_sha256=ws.source_sha256,
        target=target,
        target_name=target_name,
    )
    report = calib.manifest.representativeness
    if report is not None:
        report = with_report(calib, report)
        save_report(report, run_dir)
        for warning in report.warnings:
            log.warning("calibration set %s: %s", calib.name, warning)
    return calib


def _collect(onnx: str, calib: CalibrationSet, ws: Workspace, progress: Callable) -> dict:
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.stats import collect_statistics

    batches = list(calib.batches(ws.tokenizer, batch_size=BATCH))
    total = len(batches)

    def counted() -> Iterable[Feed]:
        for i, b in enumerate(batches):
            yield b
            progress(i + 1, total)

    return collect_statistics(onnx, counted(), open_runner=open_ort_runner)


def _compare(ws: Workspace, calib: CalibrationSet, run_dir: Path, key: str, collected) -> None:
    """Every method side by side (calibration_comparison.json + calibration/ for the report);
    ``collected`` is (statistics, their wall time in s) or (None, None) to collect them here."""
    from workbench.evaluate.calibration_methods import OUT_DIR, compare_methods
    from workbench.results.calibration import COMPARISON_FILE

    c = ws.exp.calibration
    ckey = sha256_json(
        {
            "tables": key,
            "test": ws.test_sha256,
            "per_channel": c.per_channel,
            "exclude": list(c.exclude),
            "methods": list(c.compare),
            "schema": SCHEMA_VERSION,  # a cached record of an older schema is not reused
            "v": 2,  # 2: Q/DQ models in the build cache, best by agreement, real statistics time
        }
    )[:16]
    cached = cache_root() / "comparisons" / ckey
    if reuse_entry(cached, "calibration comparison"):
        shutil.copytree(cached / OUT_DIR, run_dir / OUT_DIR, dirs_exist_ok=True)
        shutil.copyfile(cached / COMPARISON_FILE, run_dir / COMPARISON_FILE)
        return
    pairs = ws.pairs
    texts = ws.texts
    feeds = [
        ws.tokenizer.encode(texts[i : i + 32], pairs=None if pairs is None else pairs[i : i + 32])
        for i in range(0, len(texts), 32)
    ]
    stats, stats_s = collected
    if stats is None:
        from workbench.backends.onnxruntime.runner import open_ort_runner
        from workbench.calibration.stats import collect_statistics

        t0 = time.perf_counter()
        stats = collect_statistics(
            ws.export.onnx_path, calib.batches(ws.tokenizer, BATCH), open_runner=open_ort_runner
        )
        stats_s = time.perf_counter() - t0
    compare_methods(
        ws.export.onnx_path,
        [],
        feeds,
        ws.labels,
        run_dir,
        c.compare,
        labels=ws.model.labels,
        calibration_set_sha256=calib.manifest_sha256,
        test_set_sha256=ws.test_sha256,
        per_channel=c.per_channel,
        exclude=c.exclude,
        statistics=stats,
        statistics_seconds=stats_s,
        cache_dir=cache_root() / "builds",
    )
    tmp = partial_dir(cached)
    shutil.copytree(run_dir / OUT_DIR, tmp / OUT_DIR)
    shutil.copyfile(run_dir / COMPARISON_FILE, tmp / COMPARISON_FILE)
    publish_entry(tmp, cached)
