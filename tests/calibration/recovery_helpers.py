"""Shared helpers of the accuracy-recovery tests: outlier models, ORT logits, agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

OUTLIER_CHANNELS = (3, 11, 17)


def plant_outliers(fp32_onnx: Path, out: Path, factor: float = 50.0, gain: float = 1.0) -> Path:
    """Scale a few gamma channels by ``factor`` in each LayerNorm that feeds a MatMul
    (BERT's activation outliers); each gets its own gamma (the export shares them).
    ``gain`` scales every MatMul weight: a random BERT's std-0.02 weights leave the
    residual stream dominant, so layer errors barely reach the logits (a trained one's do)."""
    model = onnx.load(str(fp32_onnx))
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and gain != 1.0:
            w = inits[node.input[1]]
            w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(gain), w.name))
    feeds_matmul = {i for n in model.graph.node if n.op_type == "MatMul" for i in n.input}
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and node.output[0] in feeds_matmul:
            g = numpy_helper.to_array(inits[node.input[1]]).copy()
            g[list(OUTLIER_CHANNELS)] *= factor
            node.input[1] = f"{node.name}_planted_gamma"
            model.graph.initializer.append(numpy_helper.from_array(g, node.input[1]))
    onnx.save(model, str(out))
    return out


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def logits(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    sess = session(path)
    names = {i.name for i in sess.get_inputs()}
    return np.concatenate(
        [sess.run(["logits"], {k: v for k, v in f.items() if k in names})[0] for f in feeds]
    )


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def feeds_of(tokenizer, texts: list[str], batch: int = 16) -> list[dict[str, np.ndarray]]:
    return [tokenizer.encode(texts[i : i + batch]) for i in range(0, len(texts), batch)]
