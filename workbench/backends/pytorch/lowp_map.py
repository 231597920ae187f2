"""From a calibration table (ONNX tensor names) to torch module paths of the Linears.

The TorchScript exporter names each node after the module scope that made it:
``/encoder/encoder/layer.3/intermediate/dense/MatMul`` comes from the Linear at
``encoder.encoder.layer.3.intermediate.dense``, and its first input is the
activation the table holds a range for. A MatMul/Gemm whose second input is a
constant (a weight) is a Linear; MatMuls of two activations (attention) are not.

Example::

    amax = linear_amax_from_table(CalibrationTable.load(p), info.onnx_path)
    amax["encoder.encoder.layer.3.intermediate.dense"]   # amax of that Linear's input
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.backends.pytorch.lowp import Precision, linear_paths, quantize_linears
from workbench.calibration.graph import QUANTIZED_OPS, _constant_tensors, load_onnx
from workbench.calibration.table import CalibrationTable
from workbench.errors import CalibrationError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


EXPORT_WRAPPER = "inner"  # attribute of export.py's wrapper module around the user's model
_CALL = re.compile(r"^(.+)_(\d+)$")  # the exporter's scope of a module's 2nd, 3rd ... call


def scope_parts(node_name: str) -> tuple[list[str], int]:
    """Module-scope components of a node name and which call of the module made it.

    A module run more than once (ALBERT's one shared layer, DeBERTa's query_proj on the
    relative embeddings) gets scopes ``query``, ``query_1``, ... from the exporter:
    ``/inner/a/query_1/MatMul`` -> (["a", "query", "MatMul"], 1).
    """
    parts = [p for p in node_name.split("/") if p]
    if parts and parts[0] == EXPORT_WRAPPER:  # exports made through a positional wrapper
        parts = parts[1:]
    call, out = 0, []
    for i, part in enumerate(parts):
        m = _CALL.match(part) if i < len(parts) - 1 else None  # the last part is the op
        if m and not m.group(1).endswith("."):
            call = max(call, int(m.group(2)))
            part = m.group(1)
        out.append(part)
    return out, call


def module_path_of_node(node_name: str) -> str | None:
    """``/a/b.1/c/MatMul`` -> ``a.b.1.c`` (None for a node outside any module scope);
    a repeated call's scope (``c_1``) maps to the module itself (``c``)."""
    parts, _ = scope_parts(node_name)
    if len(parts) < 2:
        return None
    return ".".join(parts[:-1])


def linear_inputs(onnx_path: str | Path) -> dict[str, list[str]]:
    """Module path of each Linear (MatMul/Gemm with a constant weight) -> its input tensors
    (one per call: a shared layer runs several times)."""
    model = load_onnx(onnx_path, load_external_data=False)
    const = _constant_tensors(model)
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2:
            continue
        act, weight = node.input[0], node.input[1]
        if weight not in const or act in const:
            continue
        path = module_path_of_node(node.name)
        if path is not None:
            out.setdefault(path, []).append(act)
    return out


def linear_amax_from_table(table: CalibrationTable, onnx_path: str | Path) -> dict[str, float]:
    """Amax of each Linear's input, keyed by torch module path, from ``table``.

    ``onnx_path`` is the export the table was calibrated on (TorchScript exporter); a table
    made for another model raises CalibrationError.
    """
    table.check_model(onnx_path)
    inputs = linear_inputs(onnx_path)
    if not inputs:
        raise CalibrationError(
            f"{onnx_path} has no named MatMul/Gemm with a weight; export it with "
            "workbench's export_onnx (TorchScript exporter keeps module scopes in node names)"
        )
    tensors = {t for ts in inputs.values() for t in ts}
    missing = sorted(t for t in tensors if t not in table.amax)
    if len(missing) == len(tensors):
        raise CalibrationError(
            f"the table has none of {onnx_path}'s Linear inputs (e.g. {missing[0]!r}); "
            "calibrate this export"
        )
    # one scale serves every call of a shared Linear: the widest range of its calls
    return {
        path: max(float(table.amax[t]) for t in ts if t in table.amax)
        for path, ts in inputs.items()
        if any(t in table.amax for t in ts)
    }


def quantize_from_table(
    model: nn.Module,
    table: CalibrationTable,
    onnx_path: str | Path,
    precision: Precision,
    exclude: Sequence[str] = (),
    per_channel: bool = True,
) -> nn.Module:
    """``quantize_linears`` with the table's ranges; Linears absent from the export stay float.

    A Linear the export does not contain never runs in the forward pass (e.g. the
    ``encoder.pooler.dense`` of a mean-pool classifier), so it is excluded by name.

    Example::

        q = quantize_from_table(load_torch_classifier(art), table, info.onnx_path, "fp8")
    """
    amax = linear_amax_from_table(table, onnx_path)
    unused = [p for p in linear_paths(model, exclude) if p not in linear_inputs(onnx_path)]
    if unused:
        log.info("%d Linear(s) not in the export stay float: %s", len(unused), unused)
    return quantize_linears(model, amax, precision, [*exclude, *unused], per_channel=per_channel)
