"""ONNX-side preparation for strongly typed builds: FP16 casting and the TRT-cache -> Q/DQ bridge.

TensorRT 11 takes precision from the model, so FP16 means an FP16 ONNX model (I/O kept
FP32) and INT8 means a Q/DQ model. Both are produced here with ONNX tooling and checked
with ONNX Runtime on CPU; neither needs TensorRT.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.errors import BackendUnavailableError, CalibrationError, ModelError
from workbench.fileio import atomic_write_with

log = logging.getLogger(__name__)

# Kept in FP32 on top of ONNX Runtime's default block list: TensorRT itself warns that
# LayerNorm in FP16 may overflow and recommends FP32 for it.
FP32_OPS = ("LayerNormalization",)


def fp16_cast_model(
    src: str | Path, dst: str | Path, keep_io_types: bool = True, extra_fp32_ops: Sequence[str] = ()
) -> Path:
    """Write an FP16 copy of ``src`` (weights and compute FP16, graph I/O FP32) to ``dst``.

    Uses ONNX Runtime's maintained float16 converter (the onnxconverter-common algorithm).

    Example::

        fp16_cast_model("model.onnx", "model.fp16.onnx")
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        from onnxruntime.transformers.float16 import (
            DEFAULT_OP_BLOCK_LIST,
            convert_float_to_float16,
        )
    except ImportError as exc:
        raise BackendUnavailableError(
            "FP16 casting needs onnxruntime's transformers tools (pip install onnxruntime)"
        ) from exc
    try:
        model = onnx.load(str(src))
    except (OSError, DecodeError) as exc:
        raise ModelError(f"cannot load ONNX model {src}: {exc}") from exc
    block = [*DEFAULT_OP_BLOCK_LIST, *FP32_OPS, *extra_fp32_ops]
    m16 = convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=block)
    toposort(m16.graph)  # the converter appends its Cast nodes at the end
    onnx.checker.check_model(m16)
    out = atomic_write_with(dst, lambda tmp: onnx.save(m16, tmp))
    log.info("wrote FP16-cast model %s (FP32 ops kept: %s)", out, ", ".join(sorted(set(block))))
    return out


def toposort(graph: Any) -> None:
    """Reorder ``graph.node`` in place so every node follows its inputs' producers (Kahn)."""
    from collections import deque

    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    deps = [{producer[x] for x in n.input if x in producer} for n in nodes]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    pending = [len(d) for d in deps]
    ready = deque(i for i, k in enumerate(pending) if k == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in users.get(i, []):
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise ModelError("the ONNX graph has a cycle; it cannot be sorted for TensorRT")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def onnx_tensor_names(path: str | Path) -> list[str]:
    """Every value name in an ONNX graph (inputs, outputs, node outputs), in graph order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    for node in graph.node:
        names.extend(o for o in node.output if o)
    return list(dict.fromkeys(names))


def _table_names(table: Any) -> set[str]:
    amax = getattr(table, "amax", None)  # workbench.calibration.table.CalibrationTable
    return set(amax) if isinstance(amax, dict) else set()


def trt_cache_to_qdq(
    cache_path: str | Path,
    fp32_onnx: str | Path,
    out_path: str | Path,
    per_channel: bool = False,
    exclude: Sequence[str] = (),
    allow_partial: bool = False,
) -> Path:
    """Turn a TensorRT 10 calibration cache into a Q/DQ ONNX model TensorRT 11 can build.

    A cache that covers under 90 % of the model's quantizable activations is refused
    (CalibrationError naming the coverage) unless ``allow_partial``.

    The cache is read with ``workbench.calibration.trt_cache.read_trt_cache`` into a
    ``CalibrationTable``; ``workbench.calibration.qdq.write_qdq_model`` inserts the Q/DQ nodes.

    Example::

        trt_cache_to_qdq("calib.cache", "model.onnx", "model.qdq.onnx")
    """
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.trt_cache import check_cache_coverage, read_trt_cache

    table = read_trt_cache(cache_path, expected_tensors=None)
    onnx_names = set(onnx_tensor_names(fp32_onnx))
    in_table = _table_names(table)
    if not in_table & onnx_names:
        raise CalibrationError(
            f"none of the {len(in_table)} tensors in {cache_path} is in {fp32_onnx}; "
            "was the cache made from another model?"
        )
    log.info(
        "TRT cache %s: %d of %d tensors match ONNX values (the rest are TensorRT-internal)",
        cache_path,
        len(in_table & onnx_names),
        len(in_table),
    )
    check_cache_coverage(table, fp32_onnx, str(cache_path), allow_partial)
    write_qdq_model(fp32_onnx, table, out_path, per_channel=per_channel, exclude=tuple(exclude))
    return Path(out_path)
