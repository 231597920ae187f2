"""How many calibration samples are enough? Calibrate with several N and seeds, measure, plot.

For each N and seed: build the calibration set, calibrate (workbench engine), write a static
Q/DQ model, evaluate it on the test split. Per N it reports accuracy across seeds and the
*threshold spread*: for every calibrated tensor, (max - min) / mean of its amax across seeds,
summarised by the median and p90 over tensors. Example::

    result = run_sweep([32, 128, 512], [0, 1, 2], onnx_path="model.onnx", tokenizer=tok,
                       out_dir=Path("reports/sweep"))
    print(result.summary())
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import DataError
from workbench.fileio import atomic_write_with, sha256_file
from workbench.results.records import SCHEMA_VERSION, Provenance, save_record

if TYPE_CHECKING:
    from workbench.data.tokenize import TextTokenizer

log = logging.getLogger(__name__)

SWEEP_FILE = "calibset_sweep.json"
PLOT_FILE = "calibset_sweep.png"


@dataclass(frozen=True)
class SweepPoint:
    """One calibration (N, seed) and how its INT8 model did on the test texts."""

    n: int
    seed: int
    calibration_set: str
    manifest_sha256: str
    length_psi: float  # of the set vs the test split
    accuracy: float
    agreement_with_fp32: float
    calibrate_seconds: float
    table_file: str  # relative to the sweep directory


@dataclass(frozen=True)
class SweepSummary:
    """Across seeds, for one N."""

    n: int
    seeds: int
    accuracy_mean: float
    accuracy_min: float
    accuracy_max: float
    accuracy_std: float
    agreement_mean: float
    amax_spread_median: float  # median over tensors of (max - min) / mean amax across seeds
    amax_spread_p90: float
    tensors: int


@dataclass(frozen=True)
class SweepResult:
    """``calibset_sweep.json``: the sweep's points, per-N summaries and plot."""

    schema_version: int
    model_path: str
    model_sha256: str
    method: str
    strategy: str
    n_test: int
    fp32_accuracy: float
    points: list[SweepPoint]
    by_n: list[SweepSummary]
    skipped: list[str]
    notes: list[str]
    plot_file: str
    provenance: Provenance

    def summary(self) -> str:
        """A text table: N, accuracy mean [min, max], agreement, amax spread."""
        lines = [
            f"calibration-size sweep: {self.method}, {self.strategy}, {self.n_test} test texts, "
            f"FP32 accuracy {self.fp32_accuracy:.4f}",
            f"{'N':>6} {'seeds':>5} {'acc mean':>9} {'acc min':>8} {'acc max':>8} "
            f"{'agree':>7} {'spread med':>10} {'spread p90':>10}",
        ]
        for s in self.by_n:
            lines.append(
                f"{s.n:>6} {s.seeds:>5} {s.accuracy_mean:>9.4f} {s.accuracy_min:>8.4f} "
                f"{s.accuracy_max:>8.4f} {s.agreement_mean:>7.4f} {s.amax_spread_median:>10.3f} "
                f"{s.amax_spread_p90:>10.3f}"
            )
        lines += [f"skipped: {s}" for s in self.skipped]
        lines += [f"note: {s}" for s in self.notes]
        lines.append(f"plot: {self.plot_file}")
        return "\n".join(lines)


def amax_spread(tables: Sequence[dict[str, float]]) -> np.ndarray:
    """Per tensor common to all tables: (max - min) / mean of its amax across the tables."""
    if len(tables) < 2:
        return np.zeros(0)
    common = sorted(set.intersection(*(set(t) for t in tables)))
    values = np.array([[t[name] for t in tables] for name in common], dtype=np.float64)
    if values.size == 0:
        return np.zeros(0)
    mean = values.mean(axis=1)
    return np.where(
        mean > 0, (values.max(axis=1) - values.min(axis=1)) / np.maximum(mean, 1e-30), 0
    )


def _summaries(points: list[SweepPoint], tables: dict[int, list[dict[str, float]]]) -> list[Any]:
    out = []
    for n in sorted({p.n for p in points}):
        acc = np.array([p.accuracy for p in points if p.n == n])
        agree = np.array([p.agreement_with_fp32 for p in points if p.n == n])
        spread = amax_spread(tables[n])
        out.append(
            SweepSummary(
                n=n,
                seeds=len(acc),
                accuracy_mean=float(acc.mean()),
                accuracy_min=float(acc.min()),
                accuracy_max=float(acc.max()),
                accuracy_std=float(acc.std()),
                agreement_mean=float(agree.mean()),
                amax_spread_median=float(np.median(spread)) if spread.size else 0.0,
                amax_spread_p90=float(np.percentile(spread, 90)) if spread.size else 0.0,
                tensors=int(spread.size),
            )
        )
    return out


def plot_sweep(result: SweepResult, path: Path) -> Path:
    """Accuracy (each seed + mean, FP32 line) and amax spread against N (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.scatter(
        [p.n for p in result.points],
        [p.accuracy for p in result.points],
        s=14,
        alpha=0.6,
        label="INT8, one seed",
    )
    ns = [s.n for s in result.by_n]
    ax1.plot(ns, [s.accuracy_mean for s in result.by_n], marker="o", label="INT8 mean")
    ax1.axhline(result.fp32_accuracy, color="black", linestyle="--", label="FP32")
    ax1.set(
        xscale="log",
        xlabel="calibration samples N",
        ylabel="test accuracy",
        title=f"accuracy vs N ({result.method})",
    )
    ax1.legend(fontsize=8)
    ax2.plot(ns, [s.amax_spread_median for s in result.by_n], marker="o", label="median tensor")
    ax2.plot(ns, [s.amax_spread_p90 for s in result.by_n], marker="s", label="p90 tensor")
    ax2.set(
        xscale="log",
        xlabel="calibration samples N",
        ylabel="(max - min) / mean amax",
        title="range spread across seeds",
    )
    ax2.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def default_model(data_file: str | None, text_column: str, label_column: str) -> tuple[str, Any]:
    """The demo's cached default classifier (prepared on first use), its ONNX and tokenizer,
    through the same Workspace a run uses."""
    from workbench.experiment.workspace import Workspace
    from workbench.results.spec import DataSpec, Experiment, ModelSpec

    data = DataSpec(file=data_file or "", text_column=text_column, label_column=label_column)
    ws = Workspace.open(Experiment(model=ModelSpec(default=True), data=data))
    return ws.export.onnx_path, ws.tokenizer


def run_sweep(
    ns: Sequence[int],
    seeds: Sequence[int],
    out_dir: Path,
    method: str = "entropy",
    onnx_path: str | Path | None = None,
    tokenizer: TextTokenizer | None = None,
    n_test: int | None = 1000,
    data_file: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    calibration_root: str | Path = "calibration_sets",
    strategy: str = "stratified",
) -> SweepResult:
    """Calibrate at every N x seed, evaluate each INT8 model, save JSON + plot in ``out_dir``."""
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.calibration.table import check_methods
    from workbench.data.datasets import subset
    from workbench.data.sources import default_pool
    from workbench.evaluate.accuracy import predict_logits
    from workbench.provenance import collect_provenance

    check_methods([method])
    if onnx_path is None:
        onnx_path, tokenizer = default_model(data_file, text_column, label_column)
    if tokenizer is None:
        raise DataError("run_sweep needs the model's tokenizer when onnx_path is given")
    pool, test = default_pool(data_file, text_column, label_column)
    if test is None:
        raise DataError(
            "the sweep needs a labelled dataset (accuracy is measured on its test split)"
        )
    test = subset(test, n_test, seed=0)
    texts, labels = list(test["text"]), np.asarray(test["label"])
    with OrtRunner(onnx_path, name="ort-fp32") as r:
        fp32 = predict_logits(r, texts, tokenizer).argmax(axis=1)
    ctx = _Context(
        pool,
        tokenizer,
        Path(onnx_path),
        method,
        strategy,
        out_dir,
        Path(calibration_root),
        texts,
        labels,
        fp32,
        tokenizer.lengths(texts),
    )
    points: list[SweepPoint] = []
    tables: dict[int, list[dict[str, float]]] = {}
    skipped: list[str] = []
    for n in sorted(set(ns)):
        if n > len(pool):
            skipped.append(f"N={n}: the pool has only {len(pool)} examples")
            continue
        tables[n] = []
        for seed in seeds:
            point, amax = _one_point(ctx, n, seed)
            points.append(point)
            tables[n].append(amax)
    if not points:
        raise DataError(f"no N in {list(ns)} fits the pool of {len(pool)}; use smaller --ns")
    result = SweepResult(
        schema_version=SCHEMA_VERSION,
        model_path=str(onnx_path),
        model_sha256=sha256_file(onnx_path),
        method=method,
        strategy=strategy,
        n_test=len(texts),
        fp32_accuracy=float((fp32 == labels).mean()),
        points=points,
        by_n=_summaries(points, tables),
        skipped=skipped,
        notes=[
            f"N={n} draws {n / len(pool):.0%} of the {len(pool)}-row pool: its seeds share most "
            "rows, so its spread understates the sampling variance of a larger pool"
            for n in sorted(tables)
            if n / len(pool) > 0.25
        ],
        plot_file=PLOT_FILE,
        provenance=collect_provenance(seeds={"split": 0, "test_subset": 0}),
    )
    plot_sweep(result, out_dir / PLOT_FILE)
    save_record(result, out_dir / SWEEP_FILE)
    return result


@dataclass(frozen=True)
class _Context:
    pool: Any  # sources.Pool
    tok: TextTokenizer
    onnx_path: Path
    method: str
    strategy: str
    out_dir: Path
    root: Path
    texts: list[str]
    labels: np.ndarray
    fp32: np.ndarray  # FP32 predictions on texts
    test_lengths: np.ndarray


def _one_point(ctx: _Context, n: int, seed: int) -> tuple[SweepPoint, dict[str, float]]:
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate
    from workbench.data.calibset import build_calibration_set
    from workbench.data.representativeness import TextProfile
    from workbench.evaluate.accuracy import predict_logits

    cs = build_calibration_set(
        ctx.pool.dataset,
        n,
        ctx.tok,
        strategy=ctx.strategy,
        seed=seed,
        root=ctx.root,
        source_path=ctx.pool.source_path,
        source_sha256=ctx.pool.source_sha256,
        target=TextProfile(ctx.test_lengths),
        target_name="test split",
    )
    t0 = time.perf_counter_ns()
    table = calibrate(ctx.onnx_path, cs.batches(ctx.tok, 16), ctx.method, cs.manifest_sha256)
    seconds = (time.perf_counter_ns() - t0) / 1e9
    table_file = f"tables/n{n}-s{seed}.json"
    table.save(ctx.out_dir / table_file)
    qdq = ctx.out_dir / "models" / f"n{n}-s{seed}.onnx"
    write_qdq_model(ctx.onnx_path, table, qdq)
    try:
        with OrtRunner(qdq, name=f"int8-n{n}-s{seed}", precision="int8-static") as r:
            pred = predict_logits(r, ctx.texts, ctx.tok).argmax(axis=1)
    finally:
        qdq.unlink(missing_ok=True)  # ~90 MB each for the default model; the table is kept
    report = cs.manifest.representativeness
    point = SweepPoint(
        n=n,
        seed=seed,
        calibration_set=str(cs.dir),
        manifest_sha256=cs.manifest_sha256,
        length_psi=report.length_psi if report else float("nan"),
        accuracy=float((pred == ctx.labels).mean()),
        agreement_with_fp32=float((pred == ctx.fp32).mean()),
        calibrate_seconds=seconds,
        table_file=table_file,
    )
    log.info(
        "sweep N=%d seed=%d: accuracy %.4f (%.1fs calibration)", n, seed, point.accuracy, seconds
    )
    return point, dict(table.amax)
