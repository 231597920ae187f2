"""INT8 builds with ONNX Runtime's quantization tool: static QDQ and dynamic.

Static QDQ quantizes only MatMul/Gemm (quantizing every op type wrecked fidelity
here: cosine 0.34), symmetric activations and weights (TensorRT requires it).
ORT's ``quantize_static`` with method Entropy and its default 128 bins silently
returns MinMax ranges, so ranges are computed with ``create_calibrator(num_bins=
2048)``, saved, and passed back as the calibration cache. ORT's histogram
calibrators hold every activation in memory (~35 MB per sample on MiniLM), so the
set given to them is capped (``ORT_CALIBRATION_CAP``).

Quantized models are sealed cache entries (``fileio.publish_entry``): verified by sha256 on
reuse, rebuilt with a warning when truncated or replaced.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.backends.onnxruntime.attention_pack import PACKED_OP
from workbench.errors import CalibrationError, EngineBuildError
from workbench.fileio import (
    atomic_write_with,
    build_entry,
    cache_root,
    reuse_entry,
    sha256_file,
    sha256_json,
)
from workbench.results.records import Int8Coverage

log = logging.getLogger(__name__)

OP_TYPES = ["MatMul", "Gemm"]
ORT_CALIBRATION_CAP = 128
QUANT_VERSION = 3  # 2: dynamic INT8 quantizes activation x activation MatMuls; 3: QAttention

QUANTIZED_MATMUL_OPS = {
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QGemm",
    "QAttention",
    "MatMulNBits",
    "QOrderedMatMul",
}
FLOAT_MATMUL_OPS = {"MatMul", "Gemm", "FusedMatMul", "FusedGemm", "Attention", "MultiHeadAttention"}


@dataclass(frozen=True)
class QuantizedModel:
    """A quantized ONNX model and how it was made."""

    path: Path
    kind: str  # "int8-static" | "int8-dynamic"
    detail: str


class _FeedReader:
    """ORT ``CalibrationDataReader``: yields each calibration feed once (no aliasing)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._feeds[start_index:end_index])


def preprocess(fp32_onnx: str | Path, out: str | Path) -> Path:
    """``quant_pre_process`` without symbolic shape inference (it fails on TorchScript exports)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def write(tmp: str) -> None:
        quant_pre_process(str(fp32_onnx), tmp, skip_symbolic_shape=True)

    return atomic_write_with(out, write)


def _cached_path(fp32_onnx: str | Path, spec: dict[str, object]) -> Path:
    import onnxruntime

    key = sha256_json(
        {"onnx": sha256_file(fp32_onnx), "ort": onnxruntime.__version__, "v": QUANT_VERSION, **spec}
    )[:16]
    return cache_root() / "quantized" / key / "model.onnx"


def quantize_dynamic_int8(
    fp32_onnx: str | Path,
    per_channel: bool = True,
    float_nodes: tuple[str, ...] = (),
    quantized_later: tuple[str, ...] = (),
) -> QuantizedModel:
    """Dynamic INT8 (weights int8, activations quantized at run time) for MatMul/Gemm;
    ``float_nodes`` (node names) stay float; ``quantized_later`` are left out of ORT's
    quantizer too, for a later step to quantize (per-token), so not called float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept = len(float_nodes)
    float_nodes = (*float_nodes, *quantized_later)
    spec: dict[str, object] = {"kind": "dynamic", "per_channel": per_channel}
    if float_nodes:
        spec["float_nodes"] = sorted(float_nodes)
    out = _cached_path(fp32_onnx, spec)
    detail = f"dynamic, weights int8 {'per-channel' if per_channel else 'per-tensor'}, MatMul/Gemm"
    detail += f", {kept} kept in float" if kept else ""
    if not reuse_entry(out.parent, "quantized model"):
        with tempfile.TemporaryDirectory() as tmp:
            pre = _packed(preprocess(fp32_onnx, Path(tmp) / "pre.onnx"), float_nodes)
            build_entry(
                out,
                lambda t: quantize_dynamic(
                    str(pre),
                    str(t),
                    per_channel=per_channel,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=[*OP_TYPES, PACKED_OP],
                    nodes_to_exclude=list(float_nodes),
                    # attention's activation x activation MatMuls too (ORT's dynamic default
                    # skips them): 78% -> 100% of MatMuls INT8 on every BERT family measured
                    extra_options={"MatMulConstBOnly": False, "DefaultTensorType": 1},
                ),
            )
    packed = _count_ops(out, "QAttention")
    detail += f"; Q/K/V of {packed} attention layers packed into QAttention" if packed else ""
    return QuantizedModel(out, "int8-dynamic", detail)


def _packed(pre: Path, float_nodes: tuple[str, ...]) -> Path:
    """``pre`` with each fused attention's Q/K/V packed into ORT's ``Attention`` (rewritten in
    place; a graph without MultiHeadAttention, e.g. the plain export, is left untouched)."""
    from workbench.backends.onnxruntime.attention_pack import pack_attention
    from workbench.calibration.graph import load_onnx

    model = load_onnx(pre)
    if pack_attention(model, keep_float=float_nodes):

        def write(tmp: str) -> None:
            import onnx

            onnx.save(model, tmp)

        atomic_write_with(pre, write)
    return pre


def _count_ops(path: Path, op_type: str) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(n.op_type == op_type for n in model.graph.node)


def quantize_static_int8_ort(
    fp32_onnx: str | Path,
    calibration_feeds: Iterable[dict[str, np.ndarray]],
    calibration_key: str,
    method: str = "entropy",
    per_channel: bool = False,
) -> QuantizedModel:
    """Static QDQ INT8 calibrated by ORT's own calibrator (capped set; see module doc)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    methods = {
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "max": CalibrationMethod.MinMax,
    }
    if method not in methods:
        raise CalibrationError(f"ORT calibration method {method!r} unknown; use {list(methods)}")
    spec = {
        "kind": "static",
        "method": method,
        "per_channel": per_channel,
        "calib": calibration_key,
    }
    out = _cached_path(fp32_onnx, spec)
    detail = f"static QDQ, ORT {method} calibration, symmetric int8, MatMul/Gemm"
    if reuse_entry(out.parent, "quantized model"):
        return QuantizedModel(out, "int8-static", detail)
    feeds = list(calibration_feeds)
    if not feeds:
        raise CalibrationError("the calibration set is empty; build one with `workbench calibset`")
    n = sum(int(f["input_ids"].shape[0]) for f in feeds)
    if n > ORT_CALIBRATION_CAP:
        raise CalibrationError(
            f"{n} samples exceed ORT's in-memory calibrator cap ({ORT_CALIBRATION_CAP}, ~35 MB "
            "each); pass fewer or use the workbench calibrator (--calibrator workbench)"
        )
    feeds = _pad_to_common_length(feeds)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess(fp32_onnx, Path(tmp) / "pre.onnx")
        calib_opts: dict[str, object] = {"symmetric": True}
        if method in ("entropy", "percentile"):
            calib_opts["num_bins"] = 2048
        calibrator = create_calibrator(
            str(pre),
            OP_TYPES,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=methods[method],
            extra_options=calib_opts,
        )
        calibrator.collect_data(_FeedReader(feeds))
        ranges = calibrator.compute_data()
        del calibrator
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        try:
            build_entry(
                out,
                lambda t: quantize_static(
                    str(pre),
                    str(t),
                    calibration_data_reader=None,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=OP_TYPES,
                    per_channel=per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=methods[method],
                    calibration_cache_path=str(cache),
                    extra_options=extra,
                ),
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineBuildError(f"ORT static quantization failed: {exc}") from exc
    return QuantizedModel(out, "int8-static", detail)


def _pad_to_common_length(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """ORT's histogram collector stacks batches: one sample per feed, one common length."""
    width = max(f["input_ids"].shape[1] for f in feeds)
    out = []
    for f in feeds:
        pad = width - f["input_ids"].shape[1]
        padded = {k: np.pad(v, ((0, 0), (0, pad))) for k, v in f.items()}
        for i in range(len(f["input_ids"])):
            out.append({k: v[i : i + 1].copy() for k, v in padded.items()})
    return out


def int8_coverage(optimized_onnx: str | Path) -> Int8Coverage:
    """Count quantized vs float MatMul-like nodes in ORT's optimized graph (what actually ran)."""
    import onnx

    model = onnx.load(str(optimized_onnx), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    q = sum(op in QUANTIZED_MATMUL_OPS for op in ops)
    f = sum(op in FLOAT_MATMUL_OPS for op in ops)
    # (Q)Attention holds the Q, K and V projections (INT8 in QAttention) and the float
    # attention core, counted like the MatMuls and MultiHeadAttention they replace
    q += 2 * ops.count("QAttention")
    f += ops.count("QAttention") + 3 * ops.count("Attention")
    return Int8Coverage(
        quantized_matmul=q,
        float_matmul=f,
        share=q / (q + f) if q + f else 0.0,
        detail="MatMul-like nodes in ORT's optimized graph (session graph_optimization_level=ALL)",
    )
