"""Realistic run directories (run.json + Parquet predictions) for gate and report tests.

``write_run`` turns per-build predictions/logits into real records and files exactly as
the pipeline lays them out; ``make_demo_run`` builds the four builds of ``workbench demo``
(PyTorch FP32, ORT FP32, ORT INT8 static, ORT INT8 dynamic) with plausible numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.evaluate.fidelity import fidelity
from workbench.fileio import sha256_strings
from workbench.results.records import (
    SCHEMA_VERSION,
    AccuracyResult,
    BuildResult,
    CalibrationSummary,
    Int8Coverage,
    LatencyResult,
    ModelSummary,
    Provenance,
    RunResult,
    kernels_label,
    save_run,
)
from workbench.results.spec import Experiment, ModelSpec

LABEL_NAMES = ["rotten", "fresh"]
XSS_TEXT = "<script>document.title='pwned';window.__xss=1</script> a film & its \"fans\""
CPU = "Intel(R) Xeon(R) CPU @ 2.20GHz"


@dataclass
class SyntheticBuild:
    """What a fake build predicted and how fast it ran."""

    name: str
    backend: str
    precision: str
    logits: np.ndarray | None  # (n, classes); None -> no accuracy result
    p50_ms: dict[tuple[int, int], float]  # (batch, seq) -> median latency
    peak_rss_mb: float = 900.0
    device: str = "cpu"
    coverage: float | None = None
    notes: list[str] = field(default_factory=list)
    preds: np.ndarray | None = None  # override argmax(logits)


def latency_result(batch: int, seq: int, p50: float, seed: int, iters: int = 200) -> LatencyResult:
    rng = np.random.default_rng(seed)
    samples = p50 * np.exp(rng.normal(0.0, 0.06, iters))
    samples[rng.choice(iters, 3, replace=False)] *= 1.6  # a few scheduler hiccups
    samples *= p50 / np.median(samples)
    p50_, p90, p99 = np.percentile(samples, [50, 90, 99])
    return LatencyResult(
        batch_size=batch,
        seq_len=seq,
        iterations=iters,
        warmup=20,
        p50_ms=float(p50_),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(samples.mean()),
        throughput_seq_per_s=float(batch / (p50_ / 1000.0)),
        includes_host_device_copies=False,
        timer="perf_counter_ns",
        samples_ms=[float(x) for x in samples],
    )


def provenance(cpu: str = CPU, cpu_count: int = 2, gpu: str = "") -> Provenance:
    return Provenance(
        git_sha="0123456789abcdef0123456789abcdef01234567",
        packages={"onnxruntime": "1.32.0", "numpy": "2.1.0", "torch": "2.13.0"},
        python="3.11.7",
        platform="Linux-6.1-x86_64",
        cpu=cpu,
        cpu_count=cpu_count,
        cpu_int8_flags=["avx2"],
        gpu=gpu,
        created_utc="2025-01-01T00:00:00+00:00",
        seeds={"split": 13, "calibration": 0},
    )


def _accuracy(b: SyntheticBuild, labels: np.ndarray, ref: SyntheticBuild, path: str):
    from sklearn.metrics import confusion_matrix, f1_score

    if b.logits is None:
        return None
    pred = b.preds if b.preds is not None else b.logits.argmax(axis=1)
    ref_pred = ref.preds if ref.preds is not None else ref.logits.argmax(axis=1)  # type: ignore[union-attr]
    cos = np.sum(b.logits * ref.logits, axis=1) / (  # type: ignore[operator]
        np.linalg.norm(b.logits, axis=1) * np.linalg.norm(ref.logits, axis=1) + 1e-12  # type: ignore[arg-type]
    )
    k = b.logits.shape[1]
    return AccuracyResult(
        n=len(labels),
        accuracy=float(np.mean(pred == labels)),
        macro_f1=float(f1_score(labels, pred, average="macro")),
        agreement=float(np.mean(pred == ref_pred)),
        logit_max_abs_err=float(np.max(np.abs(b.logits - ref.logits))),  # type: ignore[operator]
        logit_cosine_mean=float(cos.mean()),
        logit_cosine_min=float(cos.min()),
        fidelity=fidelity(ref.logits, b.logits, labels),  # type: ignore[arg-type]
        confusion=confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
        predictions_file=path,
    )


def write_run(
    run_dir: Path,
    labels: np.ndarray,
    builds: list[SyntheticBuild],
    *,
    texts: list[str] | None = None,
    run_id: str | None = None,
    reference: str | None = None,
    test_set_sha256: str | None = None,
    cpu: str = CPU,
    cpu_count: int = 2,
    gpu: str = "",
    with_calibration: bool = True,
) -> RunResult:
    """Write run.json, predictions/<build>.parquet and test_samples.parquet into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    texts = texts if texts is not None else [f"sample review number {i}" for i in range(n)]
    idx = np.arange(n, dtype=np.int64) * 3 + 7  # not 0..n-1: indices are ids, not positions
    pd.DataFrame({"idx": idx, "text": texts, "label": labels}).to_parquet(
        run_dir / "test_samples.parquet", index=False
    )
    ref = next(b for b in builds if b.name == (reference or builds[0].name))
    results = []
    for i, b in enumerate(builds):
        rel = f"predictions/{b.name}.parquet"
        if b.logits is not None:
            pred = b.preds if b.preds is not None else b.logits.argmax(axis=1)
            (run_dir / "predictions").mkdir(exist_ok=True)
            table = pa.table(
                {
                    "idx": pa.array(idx, pa.int64()),
                    "label": pa.array(labels, pa.int64()),
                    "pred": pa.array(pred, pa.int64()),
                    "logits": pa.array(list(b.logits.astype(np.float32)), pa.list_(pa.float32())),
                }
            )
            pq.write_table(table, run_dir / rel)
        cov = None
        if b.coverage is not None:
            q = round(36 * b.coverage)
            cov = Int8Coverage(q, 36 - q, b.coverage, "MatMul/Gemm nodes in ORT's optimized graph")
        results.append(
            BuildResult(
                name=b.name,
                backend=b.backend,
                precision=b.precision,
                device=b.device,
                model_path=f"/cache/models/{b.name}.onnx",
                model_sha256=f"{i:02d}" * 32,
                accuracy=_accuracy(b, labels, ref, rel),
                latency=[
                    latency_result(bs, sl, p, seed=i * 10 + bs) for (bs, sl), p in b.p50_ms.items()
                ],
                peak_rss_mb=b.peak_rss_mb,
                peak_device_mem_mb=None,
                int8_coverage=cov,
                notes=list(b.notes),
                kernels=kernels_label(b.backend, b.device),
            )
        )
    calib = None
    if with_calibration:
        calib = CalibrationSummary(
            calibration_set="calibration_sets/rt-512-stratified",
            manifest_sha256="ab" * 32,
            n_samples=512,
            method="entropy",
            table_file="",
        )
    run = RunResult(
        schema_version=SCHEMA_VERSION,
        run_id=run_id or run_dir.name,
        dataset="rotten_tomatoes",
        test_set_sha256=test_set_sha256
        or sha256_strings([f"{t}\t{y}" for t, y in zip(texts, labels, strict=True)]),
        labels=list(LABEL_NAMES),
        reference_build=ref.name,
        builds=results,
        calibration=calib,
        provenance=provenance(cpu, cpu_count, gpu),
        experiment=Experiment(name="fixture", model=ModelSpec(default=True)),
        model=ModelSummary(
            kind="default",
            path="models/minilm-rt",
            onnx_path="models/minilm-rt/model.onnx",
            onnx_sha256="cd" * 32,
            export_max_abs_err=1e-6,
        ),
        skipped=[],
        warnings=[],
        sanity_warnings=[],
        speedups=[],
    )
    save_run(run, run_dir)
    return run


def demo_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    adj = ["gripping", "tedious", "warm", "hollow", "sharp", "bloated", "tender", "clumsy"]
    noun = ["thriller", "comedy", "drama", "sequel", "documentary", "romance"]
    out = []
    for i in range(n):
        a, b = rng.choice(adj, 2, replace=False)
        out.append(f"a {a} and {b} {rng.choice(noun)} that lingers ({i})")
    out[5] = XSS_TEXT
    return out


def make_demo_run(run_dir: Path, n: int = 400, seed: int = 0, **kw) -> RunResult:
    """The four builds of ``workbench demo`` with realistic accuracy, fidelity and latency."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    signal = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.35, n)  # ~77% accurate
    fp32 = np.stack([-signal, signal], axis=1) * 1.5
    ort32 = fp32 + rng.normal(0, 1e-5, fp32.shape)
    dyn = fp32 + rng.normal(0, 0.08, fp32.shape)
    static = fp32 + rng.normal(0, 0.25, fp32.shape)
    static[5] = -fp32[5] * 2  # the <script> sample flips under static INT8
    b1, b8 = (1, 128), (8, 128)
    builds = [
        SyntheticBuild("pytorch-fp32", "pytorch", "fp32", fp32, {b1: 9.4, b8: 48.0}, 1450.0),
        SyntheticBuild("ort-fp32", "onnxruntime", "fp32", ort32, {b1: 6.1, b8: 31.0}, 820.0),
        SyntheticBuild(
            "ort-int8-static",
            "onnxruntime",
            "int8-static",
            static,
            {b1: 6.3, b8: 31.8},
            760.0,
            coverage=1.0,
            notes=["static QDQ INT8 no faster than FP32 on this CPU (AVX2, no VNNI)"],
        ),
        SyntheticBuild(
            "ort-int8-dynamic",
            "onnxruntime",
            "int8-dynamic",
            dyn,
            {b1: 3.8, b8: 19.5},
            700.0,
            coverage=1.0,
        ),
    ]
    return write_run(run_dir, labels, builds, texts=demo_texts(n, seed), **kw)


def paired_run(
    run_dir: Path,
    labels: np.ndarray,
    base_pred: np.ndarray,
    cand_pred: np.ndarray,
    *,
    base_p50: float = 6.0,
    cand_p50: float = 3.0,
    cand_rss: float = 700.0,
    **kw,
) -> RunResult:
    """A run with builds ``base`` and ``cand`` making exactly the given predictions."""

    def logits(pred: np.ndarray) -> np.ndarray:
        out = np.full((len(pred), 2), -1.0)
        out[np.arange(len(pred)), pred] = 1.0
        return out

    builds = [
        SyntheticBuild("base", "onnxruntime", "fp32", logits(base_pred), {(1, 128): base_p50}),
        SyntheticBuild(
            "cand",
            "onnxruntime",
            "int8-dynamic",
            logits(cand_pred),
            {(1, 128): cand_p50},
            cand_rss,
            coverage=1.0,
        ),
    ]
    return write_run(run_dir, labels, builds, **kw)


def flip_predictions(
    labels: np.ndarray, n_b: int, n_c: int, base_acc: float = 0.8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Paired predictions where ``n_b`` samples only the baseline gets right and ``n_c`` only
    the candidate; all others are scored the same by both (``base_acc`` of them right)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    base = labels.copy()
    order = rng.permutation(n)
    wrong_both = order[: int(n * (1 - base_acc)) - n_c]
    only_b = order[len(wrong_both) : len(wrong_both) + n_b]
    only_c = order[len(wrong_both) + n_b : len(wrong_both) + n_b + n_c]
    base[wrong_both] = 1 - labels[wrong_both]
    base[only_c] = 1 - labels[only_c]
    cand = base.copy()
    cand[only_b] = 1 - labels[only_b]
    cand[only_c] = labels[only_c]
    return base, cand
