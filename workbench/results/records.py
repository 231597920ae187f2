"""Result records: what a run measured, saved as JSON, read by the report and the gate.

Every field is required (no silent defaults), every top-level record carries a
``schema_version`` and provenance. Per-sample predictions live in Parquet files
that the records name by relative path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from workbench.errors import ResultsError
from workbench.fileio import atomic_write_json
from workbench.results.fidelity import Fidelity
from workbench.results.serde import from_dict, to_dict
from workbench.results.spec import Experiment

SCHEMA_VERSION = 4  # 3: RunResult.sanity_warnings and .speedups; 4: BuildResult.kernels
READABLE_VERSIONS = (2, 3, 4)  # 2 -> 3 only added two lists (read as []); 3 -> 4 kernels ("")

# Whose kernels ran a build (BuildResult.kernels): speeds belong to these, not to the precision.
KERNELS_PYTORCH_CPU = "PyTorch CPU"
KERNELS_CUBLAS = "PyTorch + cuBLAS"
KERNELS_WORKBENCH_TRITON = "PyTorch + workbench Triton kernels"
KERNELS_ORT_CPU = "ONNX Runtime CPU"
KERNELS_ORT_CUDA = "ONNX Runtime CUDA"
KERNELS_TENSORRT = "TensorRT"


def kernels_label(backend: str, device: str, *, workbench_triton: bool = False) -> str:
    """Whose kernels a build of ``backend`` on ``device`` ("cpu" or a GPU) runs.

    Example: ``kernels_label("onnxruntime", "cuda:NVIDIA H200") == "ONNX Runtime CUDA"``.
    """
    gpu = device != "cpu"
    if backend == "tensorrt":
        return KERNELS_TENSORRT
    if backend == "onnxruntime":
        return KERNELS_ORT_CUDA if gpu else KERNELS_ORT_CPU
    if workbench_triton:
        return KERNELS_WORKBENCH_TRITON
    return KERNELS_CUBLAS if gpu else KERNELS_PYTORCH_CPU


RUN_FILE = "run.json"

R = TypeVar("R")


@dataclass(frozen=True)
class Provenance:
    """Environment a record was made in."""

    git_sha: str
    packages: dict[str, str]
    python: str
    platform: str
    cpu: str
    cpu_count: int
    cpu_int8_flags: list[str]  # INT8-relevant ISA extensions (avx512_vnni, avx_vnni, amx_int8...)
    gpu: str
    created_utc: str
    seeds: dict[str, int]


@dataclass(frozen=True)
class AccuracyResult:
    """Task metrics of one build on the test split, plus fidelity to the reference build."""

    n: int
    accuracy: float
    macro_f1: float
    agreement: float  # share of predictions equal to the reference build's (1.0 for itself)
    logit_max_abs_err: float  # vs the reference build's logits
    logit_cosine_mean: float
    logit_cosine_min: float
    fidelity: Fidelity  # probabilities: KL, max |dp|, margin change; per-class flips
    confusion: list[list[int]]  # rows: true label, cols: predicted label
    predictions_file: str  # Parquet, relative to the run directory


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one build at one (batch, sequence) shape."""

    batch_size: int
    seq_len: int
    iterations: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput_seq_per_s: float  # batch_size / median latency
    includes_host_device_copies: bool
    timer: str  # "perf_counter_ns" or "cuda_event"
    samples_ms: list[float]


@dataclass(frozen=True)
class PairedBlock:
    """One timed block of a paired measurement: one build, a few back-to-back runs."""

    round: int
    build: str  # "baseline" | "candidate"
    iterations: int
    wall_ms: float  # perf_counter_ns around the block, in the build's own process
    cpu_ms: float  # that process's CPU time (all its threads) over the block
    others_running: int  # other runnable tasks on the machine just before the block
    starved: bool  # CPU/wall well below the build's usual thread use: descheduled


@dataclass(frozen=True)
class PairedSpeedup:
    """Speed-up of a candidate over a baseline, timed paired and interleaved in one window.

    ``ratio`` is the geometric mean of per-round ratios (baseline time / candidate time per
    run) with a bootstrap CI; ``contended`` says the machine was too busy to trust a FAIL.
    """

    baseline: str
    candidate: str
    batch: int
    seq: int
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    blocks_used: int
    blocks_dropped: int  # starved blocks (their round's partner block is left out too)
    load_avg: float  # mean number of other runnable tasks during the measurement
    steal_pct: float  # CPU steal over the measurement (virtual machines), in %
    cpu_per_wall: float  # median process CPU time / wall time of the used blocks
    cores: int
    contended: bool
    reason: str  # why it counts as contended ("" when it does not)
    blocks: list[PairedBlock]


@dataclass(frozen=True)
class Int8Coverage:
    """How much of the compute actually ran in INT8 (counted in the optimized graph)."""

    quantized_matmul: int
    float_matmul: int
    share: float
    detail: str  # how it was counted


@dataclass(frozen=True)
class BuildResult:
    """One build (backend x precision) evaluated on one device."""

    name: str  # e.g. "ort-int8-static"
    backend: str  # "pytorch" | "onnxruntime" | "tensorrt"
    precision: str  # "fp32" | "fp16" | "bf16" | "int8-static" | "int8-dynamic" | ...
    device: str  # "cpu" or the GPU's name
    model_path: str
    model_sha256: str
    accuracy: AccuracyResult | None
    latency: list[LatencyResult]
    peak_rss_mb: float
    peak_device_mem_mb: float | None
    int8_coverage: Int8Coverage | None
    notes: list[str]
    # whose kernels ran it (KERNELS_* above, from kernels_label); "" in records before schema 4
    kernels: str = ""


@dataclass(frozen=True)
class CalibrationSummary:
    """Which calibration set and method produced the INT8 ranges used in a run."""

    calibration_set: str  # path of the calibration set directory
    manifest_sha256: str
    n_samples: int
    method: str
    table_file: str  # JSON calibration table, relative to the run directory ("" if none)


@dataclass(frozen=True)
class SkippedBuild:
    """A build the experiment asked for that did not run here, and why."""

    name: str
    backend: str
    device: str
    precision: str
    reason: str


@dataclass(frozen=True)
class ModelSummary:
    """The model a run validated and its verified FP32 ONNX form."""

    kind: str  # "default" | "hf" | "onnx"
    path: str  # prepared-classifier dir, HF folder or .onnx file
    onnx_path: str
    onnx_sha256: str
    export_max_abs_err: float  # ORT vs PyTorch on the export check (0 for a user's .onnx)


@dataclass(frozen=True)
class RunResult:
    """Everything one ``workbench run``/``demo`` measured; the report's only input."""

    schema_version: int
    run_id: str
    dataset: str
    test_set_sha256: str  # hash of the test texts+labels: gates refuse to pair different sets
    labels: list[str]
    reference_build: str  # the build fidelity/agreement is measured against
    builds: list[BuildResult]
    calibration: CalibrationSummary | None
    provenance: Provenance
    experiment: Experiment  # the typed spec this run ran (after --quick and auto builds)
    model: ModelSummary
    skipped: list[SkippedBuild]
    warnings: list[str]  # data/model warnings raised while the run was prepared
    # --- sanity (evaluate/sanity.py): degenerate model or tokenization; [] when it looks sound
    sanity_warnings: list[str]
    speedups: list[PairedSpeedup]  # gated (baseline, candidate) pairs timed interleaved

    def build(self, name: str) -> BuildResult:
        """The build called ``name``; a ResultsError lists the ones there are."""
        for b in self.builds:
            if b.name == name:
                return b
        names = ", ".join(b.name for b in self.builds)
        raise ResultsError(f"run {self.run_id} has no build {name!r}; it has: {names}")


def hardware(run: RunResult, build: BuildResult) -> str:
    """What a latency number depends on: the device, and the host CPU and core count."""
    gpu = f", GPU {run.provenance.gpu}" if build.device != "cpu" and run.provenance.gpu else ""
    return f"device {build.device}, CPU {run.provenance.cpu} ×{run.provenance.cpu_count} cores{gpu}"


def save_record(record: Any, path: str | Path) -> Path:
    """Write a record as JSON atomically."""
    return atomic_write_json(path, to_dict(record))


def load_record(
    cls: type[R],
    path: str | Path,
    *,
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    versions: tuple[int, ...] = READABLE_VERSIONS,
) -> R:
    """Read a record of type ``cls`` from JSON; corrupt or foreign files raise ResultsError.
    ``versions`` are the schema versions it reads; ``upgrade`` fills in what an older file of
    one of them lacks, before it is typed."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{p} does not exist; run `workbench demo` first") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(
            f"{p} is not valid JSON ({exc}); re-run the stage that wrote it"
        ) from exc
    except OSError as exc:
        raise ResultsError(f"{p} cannot be read ({exc}); check it is a readable file") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    has_version = "schema_version" in getattr(cls, "__dataclass_fields__", {})
    if has_version and version not in versions:
        raise ResultsError(
            f"{p} has schema_version {version}, this workbench reads "
            f"{', '.join(map(str, versions))}; re-run with this version"
        )
    if cls is RunResult and version == 2:  # older runs: no paired timings
        data = {**data, "schema_version": SCHEMA_VERSION, "speedups": [], "sanity_warnings": []}
    if upgrade is not None and isinstance(data, dict):
        data = upgrade(data)
    return from_dict(cls, data)


def save_run(run: RunResult, run_dir: str | Path) -> Path:
    """Write ``run.json`` into the run directory."""
    return save_record(run, Path(run_dir) / RUN_FILE)


def load_run(run_dir: str | Path) -> RunResult:
    """Read ``run.json`` from a run directory (or a path to the file itself)."""
    p = Path(run_dir)
    return load_record(RunResult, p if p.suffix == ".json" else p / RUN_FILE)
