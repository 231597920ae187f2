"""ONNX Runtime in the backend registry: FP32, static INT8 (Q/DQ) and dynamic INT8 builds;
FP16 on the CUDA execution provider."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.backends.base import Runner
from workbench.backends.registry import Artifact, BuildRequest, CalibrationFeeds, Capabilities
from workbench.errors import CalibrationError
from workbench.fileio import build_entry, reuse_entry, sha256_file, sha256_json
from workbench.results.precision import precision
from workbench.results.records import Int8Coverage

if TYPE_CHECKING:
    from workbench.calibration.table import CalibrationTable

QDQ_VERSION = 3  # 2: sealed cache entries; 3: one Q/DQ pair per consumer
# ORT fuses DQ->MatMul->Q into integer kernels only for the CPU (and DML) EP
# (QDQSelectorActionTransformer); on CUDA the Q/DQ nodes run as they stand.
CUDA_QDQ_NOTE = (
    "on the CUDA EP ORT runs the Q/DQ graph as written: QuantizeLinear/DequantizeLinear "
    "kernels around float MatMuls (no INT8 GEMM), so this measures Q/DQ overhead, not INT8 speed"
)
FUSED_GRAPH = "fused graph (MultiHeadAttention + BiasGelu; Add + LayerNorm unfused)"


class OnnxRuntimeBackend:
    """Builds ONNX models with ONNX Runtime's and the workbench's quantizers; runs them in ORT."""

    name = "onnxruntime"
    capabilities = Capabilities(
        short_name="ort",
        precisions={
            "cpu": ("fp32", "int8-static", "int8-dynamic"),
            "cuda": ("fp32", "fp16", "int8-static"),
        },
        fused_graph_on=("cpu",),
        runs_qdq_model=True,
    )

    def unavailable_reason(self, device: str) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed: pip install onnxruntime"
        if device == "cuda":
            from workbench.backends.onnxruntime.cuda import ort_cuda_unavailable_reason

            return ort_cuda_unavailable_reason()
        return None

    def build(self, req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
        if req.graph == "fused":
            from workbench.backends.onnxruntime.fused_graph import fused_request

            art = self.build(replace(fused_request(req), graph="plain"), calibration)
            if req.precision == "fp32":
                return replace(art, detail=f"FP32 ONNX, {FUSED_GRAPH}")
            return replace(art, detail=f"{art.detail}; on the {FUSED_GRAPH}")
        if req.precision == "fp32":
            return Artifact(
                req.fp32_onnx, sha256_file(req.fp32_onnx), "FP32 ONNX (TorchScript export)"
            )
        if req.precision == "fp16":
            from workbench.backends.onnxruntime.fp16 import build_fp16

            b = build_fp16(req.fp32_onnx, Path(req.cache_dir) / "ort-fp16")
            return Artifact(str(b.path), sha256_file(b.path), b.detail)
        from workbench.backends.onnxruntime.build import quantize_dynamic_int8

        if req.precision == "int8-dynamic":
            from workbench.calibration.qdq import excluded_nodes

            keep = tuple(excluded_nodes(req.fp32_onnx, req.exclude)) if req.exclude else ()
            weights = "per-channel" if req.per_channel else "per-tensor"
            if req.recovery:
                from workbench.backends.onnxruntime.recovery import dynamic_with_recovery

                path, detail = dynamic_with_recovery(
                    req.fp32_onnx, req.per_channel, keep, req.recovery, calibration, req.cache_dir
                )
                return Artifact(str(path), sha256_file(path), detail, weights)
            q = quantize_dynamic_int8(req.fp32_onnx, req.per_channel, keep)
            return Artifact(str(q.path), sha256_file(q.path), q.detail, weights)
        art = _ort_static(req, calibration) if req.calibrator == "ort" else _workbench_static(req)
        if req.device == "cuda":
            return replace(art, detail=f"{art.detail}; {CUDA_QDQ_NOTE}")
        return art

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        from workbench.backends.onnxruntime.runner import OrtRunner

        if req.device == "cuda":
            from workbench.backends.onnxruntime.cuda import make_ort_cuda_runner

            return make_ort_cuda_runner(artifact.model_path, req.name, req.precision)
        return OrtRunner(
            artifact.model_path, name=req.name, precision=req.precision, intra_op_threads=threads
        )

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        """Counted in ONNX Runtime's *optimized* graph: what actually ran."""
        if not precision(req.precision).int8:
            return None
        from workbench.backends.onnxruntime.build import int8_coverage
        from workbench.backends.onnxruntime.runner import OrtRunner

        with tempfile.TemporaryDirectory() as tmp:
            opt = Path(tmp) / "optimized.onnx"
            if req.device == "cuda":
                from workbench.backends.onnxruntime.cuda import OrtCudaRunner

                with OrtCudaRunner(artifact.model_path, req.name, req.precision, opt):
                    pass
                cov = int8_coverage(opt)
                return replace(cov, detail=cov.detail.replace("ORT's", "ORT's CUDA-EP"))
            with OrtRunner(artifact.model_path, optimized_model_path=opt):
                pass
            return int8_coverage(opt)


def _workbench_static(req: BuildRequest) -> Artifact:
    """Q/DQ model from the workbench's own calibration table, cached by content hash."""
    from workbench.calibration.table import CalibrationTable

    if not req.table_file:
        raise CalibrationError(f"{req.name}: static INT8 needs a calibration table; none was made")
    table = CalibrationTable.load(req.table_file)
    out = qdq_model(req.fp32_onnx, table, req.per_channel, req.exclude, req.cache_dir)
    weights = "per-channel" if req.per_channel else "per-tensor"
    excluded = f", {len(req.exclude)} pattern(s) kept in float" if req.exclude else ""
    detail = (
        f"static Q/DQ, workbench {table.method} calibration ({table.n_samples} samples), "
        f"symmetric int8, {weights} weights, MatMul/Gemm, one Q/DQ pair per consumer{excluded}"
    )
    return Artifact(str(out), sha256_file(out), detail, weights)


def qdq_model(
    fp32_onnx: str | Path,
    table: CalibrationTable,
    per_channel: bool,
    exclude: tuple[str, ...] | list[str],
    cache_dir: str | Path,
) -> Path:
    """The Q/DQ model ONNX Runtime runs for ``table``: one cache entry per content (model,
    ranges, options), shared by the static INT8 build and the method comparison, so both
    measure the same file and a run folder holds no copy of it."""
    key = sha256_json(
        {
            "onnx": sha256_file(fp32_onnx),
            "amax": table.amax,  # the ranges, not the table file (it carries a timestamp)
            "per_channel": per_channel,
            "exclude": list(exclude),
            "v": QDQ_VERSION,
        }
    )[:16]
    out = Path(cache_dir) / "qdq" / key / "model.onnx"
    if not reuse_entry(out.parent, "Q/DQ model"):
        build_entry(
            out, lambda tmp: _write_qdq_for_ort(fp32_onnx, table, per_channel, exclude, tmp)
        )
    return out


def _write_qdq_for_ort(fp32_onnx, table: CalibrationTable, per_channel, exclude, out: Path) -> None:
    """The workbench's Q/DQ model with one Q/DQ pair per consumer: ORT's CPU passes fuse only
    unshared pairs, so a shared pair left Q/K/V in float (30 of 49 MatMuls INT8 -> 48 of 49)."""
    from workbench.backends.onnxruntime.fusion import unshare_dequantize
    from workbench.calibration.qdq import write_qdq_model

    shared = out.with_name("shared-" + out.name)
    write_qdq_model(fp32_onnx, table, shared, per_channel=per_channel, exclude=tuple(exclude))
    unshare_dequantize(shared, out)
    shared.unlink()


def _ort_static(req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
    """ONNX Runtime's own calibrator (capped: it keeps every activation in memory)."""
    from workbench.backends.onnxruntime.build import (
        ORT_CALIBRATION_CAP,
        quantize_static_int8_ort,
    )

    if calibration is None:
        raise CalibrationError(f"{req.name}: ORT static INT8 needs calibration samples")
    feeds, n = [], 0
    for feed in calibration():
        if n >= ORT_CALIBRATION_CAP:
            break
        take = min(len(feed["input_ids"]), ORT_CALIBRATION_CAP - n)
        feeds.append({k: v[:take] for k, v in feed.items()})
        n += take
    key = sha256_json({"table": req.table_file and sha256_file(req.table_file), "n": n})
    method = req.method if req.method in ("entropy", "max") else "entropy"
    q = quantize_static_int8_ort(req.fp32_onnx, feeds, key, method, per_channel=req.per_channel)
    weights = "per-channel" if req.per_channel else "per-tensor"
    return Artifact(str(q.path), sha256_file(q.path), q.detail, weights)


BACKEND = OnnxRuntimeBackend()
