"""TensorRT-test fixtures: tokenizer feeds for the tiny model, build requests, marker skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.backends.registry import BuildRequest
from workbench.data.tokenize import TextTokenizer

TEXTS = [
    "a gripping, beautifully shot film",
    "dull and far too long",
    "not bad at all, surprisingly",
    "the plot meanders but the cast is terrific and the score soars",
    "an instant classic",
    "i wanted to like it more than i did, honestly, the second half drags",
    "bad",
    "a warm, funny and clever comedy with a great ensemble cast",
]


def request_for(
    onnx: str | Path, precision: str, cache: Path, table: str = "", max_length: int = 64
) -> BuildRequest:
    """The BuildRequest the engine would make for a TensorRT build of ``onnx``."""
    return BuildRequest(
        name=f"trt-{precision}", backend="tensorrt", device="cuda", precision=precision,
        compile=False, cuda_graphs=False, fp32_onnx=str(onnx), torch_model="",
        tokenizer_file="", max_length=max_length, table_file=table, method="entropy",
        calibrator="workbench", per_channel=False, exclude=(), cache_dir=str(cache),
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_tok(tiny_model) -> TextTokenizer:
    return TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)


@pytest.fixture(scope="session")
def tiny_feeds(tiny_tok) -> list[dict[str, np.ndarray]]:
    """Four tokenizer batches of two texts each (each padded to its own longest row)."""
    return [tiny_tok.encode(TEXTS[i : i + 2]) for i in range(0, len(TEXTS), 2)]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``tensorrt`` tests with the reason where TensorRT (or Polygraphy) is absent."""
    if item.get_closest_marker("tensorrt"):
        from workbench.backends.tensorrt._trt import availability

        ok, why = availability()
        if not ok:
            pytest.skip(why)
