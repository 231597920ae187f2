"""Fixtures for calibration tests: tokenizer feeds for the tiny model and a hand-made ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.data.tokenize import TextTokenizer

WORDS = (
    "the",
    "a",
    "film",
    "movie",
    "plot",
    "cast",
    "terrific",
    "dull",
    "long",
    "short",
    "good",
    "bad",
    "score",
    "soars",
    "meanders",
    "not",
    "at",
    "all",
    "surprisingly",
    "funny",
    "sad",
    "gripping",
    "beautifully",
    "shot",
    "far",
    "too",
)


def random_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct pseudo-sentences of 3..40 words."""
    rng = np.random.default_rng(seed)
    return [f"{i} " + " ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)))) for i in range(n)]


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model) -> TextTokenizer:
    return TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)


@pytest.fixture(scope="session")
def calib_texts() -> list[str]:
    return random_texts(64)


@pytest.fixture(scope="session")
def unpadded_feeds(tiny_tokenizer, calib_texts) -> list[dict[str, np.ndarray]]:
    """Fixed-length batches with attention_mask all ones (ORT's calibrators cannot mask)."""
    feeds = []
    for i in range(0, len(calib_texts), 8):
        f = tiny_tokenizer.encode(calib_texts[i : i + 8], pad_to=32)
        f["attention_mask"][:] = 1
        feeds.append(f)
    return feeds


def make_log_model(path: Path) -> Path:
    """input_ids -> Log(float(ids) - 100) -> [B,S,1] @ W[1,4]: NaN wherever an id < 100."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["x", "hundred"], ["xs"]),
        helper.make_node("Log", ["xs"], ["logx"]),
        helper.make_node("Unsqueeze", ["logx", "axes"], ["act"]),
        helper.make_node("MatMul", ["act", "W"], ["out"], name="mm"),
    ]
    inits = [
        helper.make_tensor("hundred", TensorProto.FLOAT, [], [100.0]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
        helper.make_tensor("W", TensorProto.FLOAT, [1, 4], [1.0, -2.0, 0.5, 3.0]),
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", 4])
    graph = helper.make_graph(nodes, "logmodel", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def log_model(tmp_path: Path) -> Path:
    return make_log_model(tmp_path / "log.onnx")
