"""INT8 audit: which GEMM-like layers of a built engine really run in INT8.

Reads the JSON of ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``
(Polygraphy's ``CreateConfig`` builds with ``ProfilingVerbosity.DETAILED``, so layers come
with types and tensor formats). Per NVIDIA's "Engine Inspector" documentation a layer has
``Name``, ``LayerType``, ``Inputs``/``Outputs`` with ``Format/Datatype`` (TensorRT 10, e.g.
"Thirty-two wide channel vectorized row major Int8 format.") or ``Datatype`` + ``Format``
(TensorRT 11), and ``TacticName``. Parsing is pure; ``inspect_engine`` needs TensorRT.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from workbench.errors import EngineBuildError
from workbench.results.records import Int8Coverage

GEMM_TOKENS = ("gemm", "matrixmultiply", "matmul", "convolution", "fullyconnected", "fmha", "mha")
TACTIC_HINTS = (
    ("int8", ("i8i8", "int8", "imma", "_i8_")),
    ("fp8", ("e4m3", "fp8")),
    ("fp16", ("f16f16", "h884", "h1688", "h16816", "hmma", "fp16")),
    ("tf32", ("tf32",)),
)
TYPE_WORDS = (  # checked in order: "uint8" must not read as int8
    ("bf16", ("bfloat16", "bf16")),
    ("fp8", ("fp8", "e4m3")),
    ("uint8", ("uint8",)),
    ("int8", ("int8",)),
    ("int", ("int32", "int64")),
    ("bool", ("bool",)),
    ("fp16", ("fp16", "half")),
    ("fp32", ("fp32", "float")),
)


def dtype_of(text: str) -> str:
    """Precision named by a format/datatype string (``"...Int8 format."`` -> ``int8``)."""
    s = text.lower()
    return next((p for p, words in TYPE_WORDS if any(w in s for w in words)), "unknown")


def layer_precision(layer: dict[str, Any]) -> str:
    """A layer's compute precision: its data inputs' datatype, else its tactic name's hint."""
    found = []
    for t in layer.get("Inputs", []):
        dims = t.get("Dimensions") if isinstance(t, dict) else None
        if not isinstance(t, dict) or (isinstance(dims, list) and len(dims) < 2):
            continue  # Myelin GEMMs also list scalar alpha/beta inputs
        text = " ".join(str(t.get(k, "")) for k in ("Format/Datatype", "Datatype", "Format"))
        if (d := dtype_of(text)) not in ("unknown", "int", "bool", "uint8"):
            found.append(d)
    if found:
        return "int8" if "int8" in found else Counter(found).most_common(1)[0][0]
    tactic = str(layer.get("TacticName", "")).lower()
    return next((p for p, toks in TACTIC_HINTS if any(t in tactic for t in toks)), "unknown")


def is_gemm(layer: dict[str, Any]) -> bool:
    """Matrix-multiply-like layer (GEMM, convolution, fused attention)."""
    text = f"{layer.get('LayerType', '')} {layer.get('ParameterType', '')}".lower()
    return any(tok in text for tok in GEMM_TOKENS)


def coverage_from_inspector(text: str) -> Int8Coverage:
    """The ``Int8Coverage`` record from the inspector's JSON (TensorRT 10 or 11 layout).

    Example::

        coverage_from_inspector(Path(engine_dir, "layers.json").read_text())
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineBuildError(f"engine inspector output is not JSON ({exc})") from exc
    layers = data.get("Layers") if isinstance(data, dict) else data
    if not isinstance(layers, list):
        raise EngineBuildError(
            "engine inspector JSON has no 'Layers' list; pass the output of "
            "get_engine_information(LayerInformationFormat.JSON)"
        )
    if not any(isinstance(x, dict) and "LayerType" in x for x in layers):
        raise EngineBuildError(
            "the engine was built without ProfilingVerbosity.DETAILED: layer precisions unknown"
        )
    gemms = [x for x in layers if isinstance(x, dict) and is_gemm(x)]
    by_prec = Counter(layer_precision(x) for x in gemms)
    q = by_prec.pop("int8", 0)
    fallback = [str(x.get("Name", "")) for x in gemms if layer_precision(x) != "int8"]
    detail = f"TensorRT engine inspector: {q} of {len(gemms)} GEMM-like layers run INT8"
    if by_prec:
        detail += f"; others {dict(sorted(by_prec.items()))}, e.g. {', '.join(fallback[:3])}"
    return Int8Coverage(
        quantized_matmul=q,
        float_matmul=len(gemms) - q,
        share=q / len(gemms) if gemms else 0.0,
        detail=detail,
    )


def inspect_engine(trt: ModuleType, engine: Any, input_names: Sequence[str], shape: Any) -> str:
    """The inspector's JSON with every input set to ``shape``, so dimensions are concrete."""
    context = engine.create_execution_context()
    for name in input_names:
        context.set_input_shape(name, tuple(shape))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
