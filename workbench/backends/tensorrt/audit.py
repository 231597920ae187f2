"""INT8 audit: which layers of a built engine really run in INT8, by count and by GEMM FLOPs.

Parses the JSON of ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``
(engine built with ``ProfilingVerbosity.DETAILED``). Format, per NVIDIA's documentation
("Engine Inspector" in the TensorRT developer guide, and the TensorRT 10 -> 11 migration
note on IEngineInspector): a top-level object with ``"Layers"`` (a list of layer objects,
or of plain names below DETAILED verbosity) and ``"Bindings"`` (10.x) or ``"I/O Tensors"``
(11.x). A layer has ``Name``, ``LayerType``, ``Inputs``/``Outputs`` (each with ``Name``,
``Dimensions``, ``Format/Datatype`` such as "Row major linear FP32 format (kLINEAR)",
"Thirty-two wide channel vectorized row major Int8 format." or Myelin's "Int8"/"Half"/
"Float"), optional ``Weights``/``OutMaps`` for convolutions and ``TacticName``.
Parsing is pure; only ``inspect_engine`` touches TensorRT.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workbench.errors import EngineBuildError
from workbench.results.records import Int8Coverage

GEMM_TOKENS = ("gemm", "matrixmultiply", "matmul", "convolution", "fullyconnected", "fmha", "mha")
_TACTIC_HINTS = (
    ("int8", ("i8i8", "int8", "imma", "_i8_")),
    ("fp8", ("e4m3", "fp8")),
    ("bf16", ("bf16",)),
    ("fp16", ("f16f16", "h884", "h1688", "h16816", "hmma", "fp16")),
    ("tf32", ("tf32",)),
)


@dataclass(frozen=True)
class LayerInfo:
    """One engine layer as the audit sees it."""

    name: str
    layer_type: str
    precision: str  # int8 | fp8 | fp16 | bf16 | tf32 | fp32 | int | bool | unknown
    is_gemm: bool
    flops: float | None  # GEMM/conv FLOPs (2 x MACs) at the inspected shapes; None if unknown
    tactic: str


@dataclass(frozen=True)
class Int8Audit:
    """Summary of where an engine's GEMMs run; ``fallback`` names non-INT8 GEMM layers."""

    n_layers: int
    n_gemm: int
    gemm_by_precision: dict[str, int]
    gemm_flops_by_precision: dict[str, float]
    int8_layer_share: float  # INT8 GEMM layers / GEMM layers
    int8_flops_share: float  # INT8 GEMM FLOPs / known GEMM FLOPs (nan if none known)
    flops_unknown: int  # GEMM layers whose FLOPs could not be computed
    reformat_layers: int
    fallback: list[str]
    detailed: bool  # False when the engine was not built with ProfilingVerbosity.DETAILED
    warnings: list[str]

    def to_coverage(self) -> Int8Coverage:
        """The results-record form (``BuildResult.int8_coverage``)."""
        share = self.int8_flops_share
        how = "GEMM FLOPs"
        if math.isnan(share):
            share, how = self.int8_layer_share, "GEMM layer count (FLOPs unknown)"
        q = self.gemm_by_precision.get("int8", 0)
        detail = (
            f"TensorRT engine inspector: {q}/{self.n_gemm} GEMM layers INT8; share by {how}"
            + (f"; fallback: {', '.join(self.fallback[:5])}" if self.fallback else "")
        )
        return Int8Coverage(
            quantized_matmul=q, float_matmul=self.n_gemm - q, share=float(share), detail=detail
        )


def dtype_of(fmt: str) -> str:
    """Precision named by a ``Format/Datatype`` string (``"...Int8 format."`` -> ``int8``)."""
    s = fmt.lower()
    if "bfloat16" in s or "bf16" in s:
        return "bf16"
    if "fp8" in s or "e4m3" in s:
        return "fp8"
    if "uint8" not in s and "int8" in s:
        return "int8"
    if "int32" in s or "int64" in s:
        return "int"
    if "bool" in s:
        return "bool"
    if "fp16" in s or "half" in s:
        return "fp16"
    if "fp32" in s or "float" in s:
        return "fp32"
    return "unknown"


def _tensor_dtype(t: dict[str, Any]) -> str:
    for key in ("Format/Datatype", "Datatype", "DataType", "Format"):
        v = t.get(key)
        if isinstance(v, str):
            d = dtype_of(v)
            if d != "unknown":
                return d
    return "unknown"


def _dims(t: dict[str, Any]) -> list[int] | None:
    d = t.get("Dimensions")
    if not isinstance(d, list) or not all(isinstance(x, int) and x > 0 for x in d):
        return None  # missing, or dynamic (-1) when no execution context was set
    return d


def is_gemm(layer: dict[str, Any]) -> bool:
    """Matrix-multiply-like layer (GEMM, convolution, fused attention)."""
    text = f"{layer.get('LayerType', '')} {layer.get('ParameterType', '')}".lower()
    return any(tok in text for tok in GEMM_TOKENS)


def _data_inputs(layer: dict[str, Any]) -> list[dict[str, Any]]:
    """Inputs that carry data: rank >= 2 (Myelin GEMMs also list scalar alpha/beta inputs)."""
    out = []
    for t in layer.get("Inputs", []):
        if not isinstance(t, dict):
            continue
        dims = t.get("Dimensions")
        if not isinstance(dims, list) or len(dims) >= 2:
            out.append(t)
    return out


def layer_precision(layer: dict[str, Any]) -> str:
    """Precision a layer computes in: its data inputs' datatype, else its tactic name's hint."""
    found = [_tensor_dtype(t) for t in _data_inputs(layer)]
    found = [d for d in found if d not in ("unknown", "int", "bool")]
    if found:
        return "int8" if "int8" in found else Counter(found).most_common(1)[0][0]
    tactic = str(layer.get("TacticName", "")).lower()
    for precision, tokens in _TACTIC_HINTS:
        if any(tok in tactic for tok in tokens):
            return precision
    outs = [_tensor_dtype(t) for t in layer.get("Outputs", []) if isinstance(t, dict)]
    return outs[0] if outs else "unknown"


def gemm_flops(layer: dict[str, Any]) -> float | None:
    """2 x MACs of a GEMM/conv layer from its shapes; None when they are not all known."""
    outs = [t for t in layer.get("Outputs", []) if isinstance(t, dict)]
    out = _dims(outs[0]) if outs else None
    if out is None:
        return None
    n_out = math.prod(out)
    weights, out_maps = layer.get("Weights"), layer.get("OutMaps")
    if isinstance(weights, dict) and isinstance(out_maps, int) and out_maps > 0:
        count = weights.get("Count")
        if isinstance(count, int) and count > 0:
            return 2.0 * n_out * count / out_maps  # count / out_maps = Cin * kernel / groups
    mats = [d for d in (_dims(t) for t in layer.get("Inputs", []) if isinstance(t, dict)) if d]
    mats = [d for d in mats if len(d) >= 2]
    if len(mats) < 2 or len(out) < 2:
        return None
    a = mats[0]
    k = a[-1] if a[-2] == out[-2] else a[-2]
    return 2.0 * n_out * k


def parse_layer(layer: dict[str, Any] | str) -> LayerInfo:
    """One inspector layer (dict at DETAILED verbosity, bare name otherwise)."""
    if isinstance(layer, str):
        return LayerInfo(layer, "unknown", "unknown", False, None, "")
    gemm = is_gemm(layer)
    return LayerInfo(
        name=str(layer.get("Name", "")),
        layer_type=str(layer.get("LayerType", "unknown")),
        precision=layer_precision(layer),
        is_gemm=gemm,
        flops=gemm_flops(layer) if gemm else None,
        tactic=str(layer.get("TacticName", layer.get("TacticValue", ""))),
    )


def _layers_of(data: Any) -> list[Any]:
    if isinstance(data, dict) and "Layers" in data:
        layers = data["Layers"]
    elif isinstance(data, list):
        layers = data  # trtexec --exportLayerInfo style: a bare list
    elif isinstance(data, dict) and "Name" in data:
        layers = [data]  # one get_layer_information() result
    else:
        raise EngineBuildError(
            "engine inspector JSON has no 'Layers' list; pass the output of "
            "get_engine_information(LayerInformationFormat.JSON)"
        )
    if not isinstance(layers, list):
        raise EngineBuildError("engine inspector JSON 'Layers' is not a list")
    return layers


def summarize(layers: list[LayerInfo], detailed: bool) -> Int8Audit:
    """Counts, FLOP shares and fallback list over parsed layers."""
    gemms = [lay for lay in layers if lay.is_gemm]
    by_prec = Counter(lay.precision for lay in gemms)
    flops: dict[str, float] = {}
    for lay in gemms:
        if lay.flops is not None:
            flops[lay.precision] = flops.get(lay.precision, 0.0) + lay.flops
    known = sum(flops.values())
    q = by_prec.get("int8", 0)
    fallback = [lay.name for lay in gemms if lay.precision != "int8"]
    warnings = []
    if not detailed:
        warnings.append(
            "engine built without ProfilingVerbosity.DETAILED: layer precisions are unknown"
        )
    if fallback and q:
        warnings.append(
            f"{len(fallback)} of {len(gemms)} GEMM layers did not run in INT8 "
            f"({dict((p, n) for p, n in by_prec.items() if p != 'int8')}): silent fallback"
        )
    elif gemms and not q:
        warnings.append("no GEMM layer runs in INT8: the engine is effectively FP16/FP32")
    return Int8Audit(
        n_layers=len(layers),
        n_gemm=len(gemms),
        gemm_by_precision=dict(by_prec),
        gemm_flops_by_precision=flops,
        int8_layer_share=q / len(gemms) if gemms else math.nan,
        int8_flops_share=flops.get("int8", 0.0) / known if known else math.nan,
        flops_unknown=sum(1 for lay in gemms if lay.flops is None),
        reformat_layers=sum(1 for lay in layers if "reformat" in lay.layer_type.lower()),
        fallback=fallback,
        detailed=detailed,
        warnings=warnings,
    )


def parse_engine_information(text: str) -> Int8Audit:
    """Audit from the inspector's JSON text.

    Example::

        audit = parse_engine_information(inspector.get_engine_information(fmt.JSON))
        audit.int8_flops_share, audit.fallback
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineBuildError(f"engine inspector output is not JSON ({exc})") from exc
    raw = _layers_of(data)
    detailed = any(isinstance(x, dict) and "LayerType" in x for x in raw)
    return summarize([parse_layer(x) for x in raw], detailed)


def inspect_engine(trt: Any, engine: Any, context: Any | None = None) -> str:
    """The engine inspector's JSON (with ``context``'s shapes when given, so dims are concrete)."""
    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
