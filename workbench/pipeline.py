"""The whole loop: data, classifier, ONNX, calibration set, INT8 builds, evaluation, report.

``run_demo`` is what ``workbench demo`` and the quickstart notebook call. Every
expensive stage is cached by content hash, so a second run reuses the classifier,
the export, the calibration set and the quantized models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.data.calibset import CalibrationSet
from workbench.data.datasets import (
    LabelledData,
    Splits,
    load_labelled_file,
    load_rotten_tomatoes,
    make_splits,
    subset,
    test_set_sha256,
)
from workbench.data.tokenize import TextTokenizer
from workbench.errors import ConfigError
from workbench.fileio import sha256_file
from workbench.results.records import (
    SCHEMA_VERSION,
    BuildResult,
    CalibrationSummary,
    RunResult,
    save_run,
)

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.build import QuantizedModel
    from workbench.backends.pytorch.artifact import ModelArtifact
    from workbench.gate.decision import GateDecision

log = logging.getLogger(__name__)

CALIBRATORS = ("workbench", "ort")
DEFAULT_POLICY = str(Path(__file__).parent / "gate" / "default_policy.toml")


@dataclass(frozen=True)
class DemoConfig:
    """Everything that decides a demo run (saved into the run record)."""

    quick: bool = False
    data_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    finetune: bool | None = None
    max_train: int | None = None
    n_test: int | None = None
    calib_n: int = 512
    calib_strategy: str = "stratified"
    calibrator: str = "workbench"
    calib_method: str = "entropy"
    per_channel: bool = True  # per-output-channel weight scales (activations stay per-tensor)
    compare_methods: tuple[str, ...] = ("entropy", "percentile-99.99", "max", "mse")
    gate_policy: str | None = DEFAULT_POLICY  # None: no gate
    gate_baseline: str = "ort-fp32"
    gate_candidate: str = "ort-int8-static"
    max_length: int = 128
    latency_shapes: tuple[tuple[int, int], ...] = ((1, 128), (8, 128))
    latency_iterations: int = 50
    latency_max_seconds: float = 20.0
    threads: int = 0
    seed: int = 0
    reports_root: str = "reports"
    calibration_root: str = "calibration_sets"
    run_id: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def quick_config(**overrides: Any) -> DemoConfig:
    """Small subsets for CI and notebooks: same stages, minutes instead of tens of minutes."""
    base = DemoConfig(
        quick=True,
        max_train=800,
        n_test=300,
        calib_n=64,
        latency_iterations=10,
        latency_max_seconds=5.0,
    )
    return replace(base, **overrides)


@dataclass
class _Stages:
    """Progress bars per stage (tqdm on stderr), silent when progress is off."""

    enabled: bool

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Any]:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{name:<22}", disable=not self.enabled, leave=True)
        try:
            yield bar
        finally:
            if total is None:
                bar.update(1)
            bar.close()

    def callback(self, bar: Any) -> Any:
        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        return update


def load_data(config: DemoConfig) -> LabelledData:
    """The configured labelled dataset (the shipped Rotten Tomatoes by default)."""
    if config.data_file:
        return load_labelled_file(config.data_file, config.text_column, config.label_column)
    return load_rotten_tomatoes()


def _check_config(config: DemoConfig) -> None:
    if config.calibrator not in CALIBRATORS:
        raise ConfigError(f"calibrator {config.calibrator!r} unknown; use one of {CALIBRATORS}")
    if config.calib_n < 1:
        raise ConfigError("calib_n must be at least 1")
    for batch, seq in config.latency_shapes:
        if batch < 1 or not 8 <= seq <= config.max_length:
            raise ConfigError(
                f"latency shape ({batch}, {seq}) invalid: batch >= 1, 8 <= seq <= max_length"
            )


def run_demo(config: DemoConfig | None = None) -> tuple[RunResult, Path]:
    """Run the whole loop on ``config``; returns the run record and its directory.

    Example::

        run, run_dir = run_demo(quick_config())
        print(format_summary(run))
    """
    config = config or DemoConfig()
    _check_config(config)
    st = _Stages(config.progress)
    with st.stage("load data"):
        data = load_data(config)
        splits = make_splits(data, seed=config.seed)
        test = subset(splits.test, config.n_test, config.seed)
    run_id = config.run_id or _run_id(data.name, config.quick)
    run_dir = Path(config.reports_root) / run_id
    with st.stage("prepare classifier") as bar:
        from workbench.backends.pytorch.prepare import prepare_classifier

        art = prepare_classifier(
            splits,
            finetune=config.finetune,
            max_train=config.max_train,
            max_length=config.max_length,
            seed=config.seed,
            progress=st.callback(bar),
        )
    with st.stage("export ONNX"):
        from workbench.backends.onnxruntime.export import export_onnx

        export = export_onnx(art)
    tok = TextTokenizer.from_model_dir(art.encoder_dir, art.max_length)
    with st.stage("calibration set"):
        calib = _calibration_set(config, data, splits, tok, run_dir)
    with st.stage("quantize INT8"):
        static, dynamic, table_file = _quantize(config, export.onnx_path, calib, tok, run_dir)
    onnx_builds = [
        ("ort-fp32", "fp32", Path(export.onnx_path), "FP32 ONNX (TorchScript export, opset 17)"),
        ("ort-int8-static", "int8-static", static.path, static.detail),
        ("ort-int8-dynamic", "int8-dynamic", dynamic.path, dynamic.detail),
    ]
    texts, labels = list(test["text"]), np.asarray(test["label"])
    from workbench.evaluate.accuracy import save_test_samples

    save_test_samples(run_dir, texts, labels)
    if config.compare_methods:
        with st.stage("compare calibrations"):
            _compare_methods(config, export.onnx_path, calib, tok, texts, labels, run_dir, data)
    builds = _evaluate_all(config, st, art, tok, onnx_builds, texts, labels, run_dir)
    from workbench.provenance import collect_provenance

    run = RunResult(
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        dataset=data.name,
        test_set_sha256=test_set_sha256(test),
        labels=list(data.label_names),
        reference_build="torch-fp32",
        builds=builds,
        calibration=CalibrationSummary(
            calibration_set=str(calib.dir),
            manifest_sha256=calib.manifest_sha256,
            n_samples=len(calib),
            method=f"{config.calibrator}:{config.calib_method}",
            table_file=table_file,
        ),
        provenance=collect_provenance(seeds={"split": config.seed, "calibration": config.seed}),
        config={
            **_jsonable(asdict(config)),
            "model_dir": str(art.path),
            "onnx_sha256": export.onnx_sha256,
            "export_max_abs_err": export.max_abs_err,
        },
    )
    save_run(run, run_dir)
    if config.gate_policy:
        with st.stage("gate"):
            gate_run(run_dir, config)
    with st.stage("render report"):
        from workbench.report.render import render_report

        render_report(run_dir)
    return run, run_dir


def gate_run(run_dir: Path, config: DemoConfig) -> GateDecision:
    """Gate the configured candidate against the baseline of the same run; writes gate.json."""
    from workbench.gate import evaluate_gate, load_policy, write_gate_outputs

    if not config.gate_policy:
        raise ConfigError("no gate policy configured; pass a policy TOML file")
    decision = evaluate_gate(
        run_dir,
        config.gate_baseline,
        run_dir,
        config.gate_candidate,
        load_policy(config.gate_policy),
    )
    write_gate_outputs(decision, run_dir)
    return decision


def _calibration_set(
    config: DemoConfig, data: LabelledData, splits: Splits, tok: TextTokenizer, run_dir: Path
) -> CalibrationSet:
    """Build (or reuse) the calibration set; its representativeness vs the test split goes
    into the manifest and into the run directory for the report."""
    from workbench.data.calibset import build_calibration_set, with_report
    from workbench.data.representativeness import TextProfile, save_report

    target = TextProfile.from_texts(splits.test["text"], tok, splits.test["label"])
    calib = build_calibration_set(
        splits.calibration_pool,
        config.calib_n,
        tok,
        strategy=config.calib_strategy,
        seed=config.seed,
        root=config.calibration_root,
        source_path=data.source_path,
        source_sha256=data.source_sha256,
        target=target,
        target_name="test split",
    )
    report = calib.manifest.representativeness
    if report is not None:
        report = with_report(calib, report)
        save_report(report, run_dir)
        for warning in report.warnings:
            log.warning("calibration set %s: %s", calib.name, warning)
    return calib


def _compare_methods(
    config: DemoConfig,
    onnx_path: str,
    calib: CalibrationSet,
    tok: TextTokenizer,
    texts: list[str],
    labels: np.ndarray,
    run_dir: Path,
    data: LabelledData,
) -> None:
    """Every calibration method side by side (calibration_comparison.json for the report)."""
    from workbench.calibration.compare import compare_methods

    feeds = [tok.encode(texts[i : i + 32]) for i in range(0, len(texts), 32)]
    compare_methods(
        onnx_path,
        calib.batches(tok, batch_size=16),
        feeds,
        labels,
        run_dir,
        config.compare_methods,
        labels=data.label_names,
        calibration_set_sha256=calib.manifest_sha256,
        per_channel=config.per_channel,
    )


def _quantize(
    config: DemoConfig, onnx_path: str, calib: CalibrationSet, tok: TextTokenizer, run_dir: Path
) -> tuple[QuantizedModel, QuantizedModel, str]:
    from workbench.backends.onnxruntime.build import (
        ORT_CALIBRATION_CAP,
        QuantizedModel,
        quantize_dynamic_int8,
        quantize_static_int8_ort,
    )

    dynamic = quantize_dynamic_int8(onnx_path, per_channel=True)
    if config.calibrator == "ort":
        feeds, n = [], 0
        for feed in calib.batches(tok, batch_size=16):
            if n >= ORT_CALIBRATION_CAP:
                break
            take = min(len(feed["input_ids"]), ORT_CALIBRATION_CAP - n)
            feeds.append({k: v[:take] for k, v in feed.items()})
            n += take
        key = f"{calib.manifest_sha256}:{n}"
        static = quantize_static_int8_ort(
            onnx_path, feeds, key, config.calib_method, per_channel=config.per_channel
        )
        return static, dynamic, ""
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate

    table = calibrate(
        onnx_path,
        calib.batches(tok, batch_size=16),
        method=config.calib_method,
        calibration_set_sha256=calib.manifest_sha256,
    )
    table_rel = "calibration_table.json"
    table.save(run_dir / table_rel)
    out = run_dir / "models" / "int8-static-qdq.onnx"
    write_qdq_model(onnx_path, table, out, per_channel=config.per_channel)
    weights = "per-channel" if config.per_channel else "per-tensor"
    detail = (
        f"static QDQ, workbench {config.calib_method} calibration ({len(calib)} samples), "
        f"symmetric int8, {weights} weights, MatMul/Gemm"
    )
    return QuantizedModel(out, "int8-static", detail), dynamic, table_rel


def _evaluate_all(
    config: DemoConfig,
    st: _Stages,
    art: ModelArtifact,
    tok: TextTokenizer,
    onnx_builds: list[tuple[str, str, Path, str]],
    texts: list[str],
    labels: np.ndarray,
    run_dir: Path,
) -> list[BuildResult]:
    from workbench.backends.onnxruntime.build import int8_coverage
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.backends.pytorch.model import load_torch_classifier
    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.evaluate.accuracy import accuracy_result, predict_logits, save_predictions
    from workbench.evaluate.isolated import LatencySpec, measure_isolated

    logits: dict[str, np.ndarray] = {}
    coverage = {}
    with st.stage("evaluate torch-fp32") as bar, TorchRunner(load_torch_classifier(art)) as r:
        logits["torch-fp32"] = predict_logits(r, texts, tok, progress=st.callback(bar))
    for name, precision, path, _ in onnx_builds:
        with st.stage(f"evaluate {name}") as bar:
            opt = run_dir / "models" / f"{name}.optimized.onnx"
            opt.parent.mkdir(parents=True, exist_ok=True)
            with OrtRunner(path, name=name, precision=precision, optimized_model_path=opt) as r:
                logits[name] = predict_logits(r, texts, tok, progress=st.callback(bar))
            coverage[name] = int8_coverage(opt) if precision.startswith("int8") else None
    ref = logits["torch-fp32"]
    entries = [("torch-fp32", "pytorch", "fp32", str(art.path), "PyTorch eager FP32 (CPU)")]
    entries += [(n, "onnxruntime", p, str(path), d) for n, p, path, d in onnx_builds]
    results = []
    for name, backend, precision, model, detail in entries:
        with st.stage(f"latency {name}"):
            spec = LatencySpec(
                backend=backend,
                model=model,
                tokenizer_file=str(tok.path),
                precision="fp32" if backend == "pytorch" else precision,
                shapes=list(config.latency_shapes),
                iterations=config.latency_iterations,
                warmup=3,
                max_seconds_per_shape=config.latency_max_seconds,
                threads=config.threads,
            )
            outcome = measure_isolated(spec)
        pred_file = save_predictions(run_dir, name, labels, logits[name])
        acc = accuracy_result(logits[name], labels, ref, len(art.labels), pred_file)
        sha = sha256_file(model) if Path(model).is_file() else art.content_key()
        results.append(
            BuildResult(
                name=name,
                backend=backend,
                precision=precision,
                device="cpu",
                model_path=model,
                model_sha256=sha,
                accuracy=acc,
                latency=outcome.latency,
                peak_rss_mb=outcome.peak_rss_mb,
                peak_device_mem_mb=None,
                int8_coverage=coverage.get(name),
                notes=[detail],
            )
        )
    return _annotate(results)


def _annotate(results: list[BuildResult]) -> list[BuildResult]:
    """Add plain-language notes that make surprising numbers visible (e.g. INT8 no faster)."""
    from workbench.provenance import cpu_int8_flags

    flags = cpu_int8_flags()
    vnni = [f for f in flags if "vnni" in f or "amx" in f]
    isa = f"this CPU has {', '.join(vnni)}" if vnni else "this CPU lacks VNNI/AMX int8 instructions"
    by = {b.name: b for b in results}
    base = by.get("ort-fp32")
    out = []
    for b in results:
        notes = list(b.notes)
        if base and b.precision.startswith("int8") and b.latency and base.latency:
            ratio = base.latency[0].p50_ms / b.latency[0].p50_ms
            if ratio < 1.1:
                notes.append(
                    f"{b.precision} ran {ratio:.2f}x the speed of ort-fp32 at batch "
                    f"{b.latency[0].batch_size} ({isa}): INT8 does not pay off here as built"
                )
                if "per-channel weights" in b.notes[0] and b.precision == "int8-static":
                    notes.append(
                        "per-channel weight scales ran slower at batch 1 than per-tensor ones "
                        "in ONNX Runtime's CPU kernels when measured side by side "
                        "(benchmarks/README.md); `--per-tensor` trades some accuracy for speed"
                    )
        if b.int8_coverage and b.int8_coverage.share < 0.5:
            notes.append(
                f"only {b.int8_coverage.quantized_matmul} of "
                f"{b.int8_coverage.quantized_matmul + b.int8_coverage.float_matmul} MatMul-like "
                "nodes ran in INT8 after ORT's graph optimization"
            )
        out.append(replace(b, notes=notes))
    return out


def _run_id(dataset: str, quick: bool) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{dataset}{'-quick' if quick else ''}"


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: [list(x) for x in v] if k == "latency_shapes" else v for k, v in d.items()}
