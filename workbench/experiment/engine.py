"""The engine: one experiment -> builds -> accuracy, latency -> records -> gate -> report.

Every build goes through the same steps via the backend registry: build (cached) ->
accuracy through the Runner contract -> latency (a fresh child process on CPU, CUDA
events on a GPU) -> ``BuildResult``. Expensive stages are keyed by content hash, so a
killed run started again reuses what finished.

Example::

    run, run_dir = run_experiment(load_experiment("experiment.toml"))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from workbench.backends.registry import BuildRequest
from workbench.errors import ConfigError
from workbench.experiment.builds import plan_builds, reference_build
from workbench.experiment.calibrate import CalibrationOutcome
from workbench.experiment.measure import BuildMeasurement, measure_build, measure_speedups
from workbench.experiment.progress import Stages
from workbench.experiment.rundir import claim_run_dir, default_run_id, preflight
from workbench.experiment.workspace import Workspace
from workbench.fileio import cache_root
from workbench.results.precision import precision
from workbench.results.records import (
    SCHEMA_VERSION,
    BuildResult,
    ModelSummary,
    RunResult,
    SkippedBuild,
    kernels_label,
    save_run,
)
from workbench.results.spec import BuildSpec, Experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Where and how a run writes (not part of what it measures)."""

    reports_root: str = "reports"
    calibration_root: str = "calibration_sets"
    run_id: str = ""
    skip_unavailable: bool = False
    progress: bool = True
    gate: bool = True
    report: bool = True
    keep_models: bool = False  # copy the cached models into the run folder (--keep-models)


def run_experiment(exp: Experiment, options: RunOptions | None = None) -> tuple[RunResult, Path]:
    """Run ``exp``; returns the run record and its directory (``reports/<run-id>/``)."""
    opts = options or RunOptions()
    run_id = opts.run_id or default_run_id(exp)  # named after [name], checked like --run-id
    preflight(exp, opts.reports_root, opts.calibration_root, run_id)  # before any stage
    builds, skipped = plan_builds(exp, opts.skip_unavailable)
    check_gate_names(exp, builds)
    st = Stages(opts.progress)
    with st.stage("load data and model"):
        ws = Workspace.from_experiment(exp)
    ws.exp = replace(ws.exp, builds=tuple(builds))
    claim = claim_run_dir(opts.reports_root, run_id)  # locked; an earlier run's files removed
    try:
        run = _measure_all(ws, builds, skipped, claim.path, run_id, opts, st)
        if opts.keep_models:
            from workbench.experiment.keep import keep_models

            run = keep_models(run, claim.path)
        save_run(run, claim.path)
        if opts.gate and ws.exp.gate.enabled and ws.exp.gate.policy is not None:
            with st.stage("gate"):
                from workbench.experiment.gating import gate_run

                gate_run(claim.path, ws.exp)
        if opts.report:
            with st.stage("render report"):
                from workbench.report.render import render_report

                render_report(claim.path)
    finally:
        claim.release()
    return run, claim.path


def _smoothed(builds: list[BuildSpec]) -> bool:
    """A build whose recovery options read the calibration set (SmoothQuant)."""
    from workbench.backends.onnxruntime.recovery import needs_calibration

    return any(needs_calibration(b.recovery) for b in builds)


def _measure_all(
    ws: Workspace,
    builds: list[BuildSpec],
    skipped: list[SkippedBuild],
    run_dir: Path,
    run_id: str,
    opts: RunOptions,
    st: Stages,
) -> RunResult:
    """Model, calibration, then every build through the same steps; the run record."""
    exp = ws.exp
    with st.stage("prepare model"):
        export = ws.export
    calib = None
    precisions = [precision(b.precision) for b in builds]
    if any(p.calibrated for p in precisions) or exp.calibration.compare or _smoothed(builds):
        fp8 = any(p.table == "fp8" for p in precisions)
        calib = ws.calibrate(run_dir, opts.calibration_root, stages=st, fp8=fp8)
    from workbench.evaluate.accuracy import save_test_samples

    save_test_samples(run_dir, ws.texts, ws.labels)
    reference = reference_build(exp, builds)
    measured: dict[str, BuildMeasurement] = {}
    for b in sorted(builds, key=lambda b: b.name != reference):  # reference first
        req = build_request(ws, b, calib)
        measured[b.name] = measure_build(ws, req, calib, run_dir, st)
    speedups = measure_speedups(ws, measured, st)
    ref_logits = measured[reference].logits
    results = [_result(ws, measured[b.name], ref_logits, run_dir) for b in builds]
    if ws.traffic is not None:
        from workbench.experiment.traffic import score_traffic

        score_traffic(ws, measured, reference, run_dir, st)
    from workbench.experiment.notes import annotate, cross_backend_agreement
    from workbench.provenance import collect_provenance

    preds = {n: m.logits.argmax(axis=1).tolist() for n, m in measured.items()}
    weights = {n: m.artifact.weights for n, m in measured.items()}
    return RunResult(
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        dataset=ws.data_name,
        test_set_sha256=ws.test_sha256,
        labels=list(ws.model.labels),
        reference_build=reference,
        builds=cross_backend_agreement(annotate(results, _gate_shape(exp), weights), preds),
        calibration=calib.summary if calib else None,
        provenance=collect_provenance(
            seeds={"split": exp.seed, "calibration": exp.seed}, gpu=_gpu_name(measured)
        ),
        experiment=exp,
        model=ModelSummary(
            kind=ws.model.kind,
            path=ws.torch_model_dir or ws.model.path,
            onnx_path=export.onnx_path,
            onnx_sha256=export.onnx_sha256,
            export_max_abs_err=export.max_abs_err,
        ),
        skipped=skipped,
        warnings=list(ws.warnings),
        sanity_warnings=_sanity(ws, reference, ref_logits),
        speedups=speedups,
    )


def check_gate_names(exp: Experiment, builds: list[BuildSpec]) -> None:
    """ConfigError unless the gate's baseline and candidates are builds this run has (run
    and init check it before any work)."""
    if not exp.gate.enabled:
        return
    names = {b.name for b in builds}
    for name in (exp.gate.baseline, *exp.gate.candidates):
        if name not in names:
            raise ConfigError(
                f"[gate] names build {name!r}, which this run does not have; builds: "
                f"{', '.join(sorted(names))} (set [gate] baseline/candidates, or enabled = false)"
            )


def preflight_experiment(exp: Experiment) -> int:
    """What ``run`` checks before expensive work: builds and gate names, model, data, labels,
    sizes. Returns the calibration pool's usable (deduplicated) size."""
    from workbench.data.calibset import usable_pool_size

    builds, _ = plan_builds(exp, skip_unavailable=True)
    check_gate_names(exp, builds)
    one = replace(exp, calibration=replace(exp.calibration, n=1))
    ws = Workspace.from_experiment(one, quick=False)  # as written: no --quick subsets
    pool = usable_pool_size(ws.pool)
    if pool < 1:
        raise ConfigError(f"{exp.source}: the calibration pool has no usable (non-empty) rows")
    from workbench.evaluate.sanity import token_warnings

    tok, texts, pairs = ws.tokenizer, ws.texts, ws.pairs
    for w in token_warnings(tok.content_lengths(texts, pairs), tok.lengths(texts, pairs),
                            tok.max_length):  # fmt: skip
        log.warning(w)  # the run will say it again; worth knowing before it starts
    return pool


def build_request(ws: Workspace, b: BuildSpec, calib: CalibrationOutcome | None) -> BuildRequest:
    """What the backend registry needs to build ``b`` in this Workspace."""
    return BuildRequest.of(
        b,
        ws.exp.calibration,
        ws.model_files,
        table_file=_table_for(b, calib),
        cache_dir=str(cache_root() / "builds"),
    )


def _table_for(b: BuildSpec, calib: CalibrationOutcome | None) -> str:
    if calib is None:
        return ""
    return calib.fp8_table_file if precision(b.precision).table == "fp8" else calib.table_file


def _result(
    ws: Workspace, m: BuildMeasurement, ref_logits: np.ndarray, run_dir: Path
) -> BuildResult:
    from workbench.evaluate.accuracy import accuracy_result, save_predictions

    pred_file = save_predictions(run_dir, m.request.name, ws.labels, m.logits)
    acc = accuracy_result(m.logits, ws.labels, ref_logits, len(ws.model.labels), pred_file)
    return BuildResult(
        name=m.request.name,
        backend=m.request.backend,
        precision=m.request.precision,
        device=m.device_name,
        model_path=m.artifact.model_path,
        model_sha256=m.artifact.model_sha256,
        accuracy=acc,
        latency=m.latency,
        peak_rss_mb=m.peak_rss_mb,
        peak_device_mem_mb=m.peak_device_mem_mb,
        int8_coverage=m.int8_coverage,
        notes=[m.artifact.detail],
        kernels=kernels_label(m.request.backend, m.device_name),
    )


def _sanity(ws: Workspace, reference: str, ref_logits: np.ndarray) -> list[str]:
    """Is the reference model (and its tokenization of the test texts) worth gating?"""
    from workbench.evaluate.sanity import prediction_warnings, token_warnings

    preds = ref_logits.argmax(axis=1)
    out = prediction_warnings(preds, ws.labels, len(ws.model.labels), reference)
    tok, texts, pairs = ws.tokenizer, ws.texts, ws.pairs
    out += token_warnings(tok.content_lengths(texts, pairs), tok.lengths(texts, pairs),
                          tok.max_length)  # fmt: skip
    for w in out:
        log.warning(w)
    return out


def _gate_shape(exp: Experiment) -> tuple[int, int]:
    p = exp.gate.policy
    return (p.latency_batch, p.latency_seq) if p and exp.gate.enabled else exp.evaluate.shapes[0]


def _gpu_name(measured: dict[str, BuildMeasurement]) -> str:
    """The GPU a CUDA build ran on ("" when every build ran on the CPU)."""
    names = [m.device_name for m in measured.values() if m.device_name != "cpu"]
    return names[0].removeprefix("cuda:") if names else ""
