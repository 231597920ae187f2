"""FP16 for strongly typed builds: an FP16 copy of the ONNX model (graph I/O kept FP32).

Strongly typed networks (TensorRT 11; 10.12 deprecated the FP16 builder flag) take their
precision from the model, so FP16 means an FP16 ONNX model. Made with ONNX Runtime's
float16 converter and checked with ONNX Runtime on CPU; no TensorRT needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.errors import BackendUnavailableError, ModelError
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
