"""TensorRT-test fixtures: tokenizer feeds for the tiny model, and the marker skips."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.fixture(scope="session")
def tiny_tok(tiny_model) -> TextTokenizer:
    return TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)


@pytest.fixture(scope="session")
def tiny_feeds(tiny_tok) -> list[dict[str, np.ndarray]]:
    """Four tokenizer batches of two texts each (each padded to its own longest row)."""
    return [tiny_tok.encode(TEXTS[i : i + 2]) for i in range(0, len(TEXTS), 2)]


def _tensorrt_missing() -> str | None:
    from workbench.backends.tensorrt._trt import availability

    ok, why = availability()
    return None if ok else why


def _gpu_missing() -> str | None:
    from workbench.backends.tensorrt.cuda import get_memory_api
    from workbench.errors import BackendUnavailableError

    try:
        get_memory_api()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``tensorrt``/``gpu`` tests with a reason where the machine lacks them."""
    if item.get_closest_marker("tensorrt") and _tensorrt_missing():
        pytest.skip("TensorRT not installed")
    if item.get_closest_marker("gpu") and (why := _gpu_missing()):
        pytest.skip(f"no usable CUDA GPU: {why}")


@pytest.fixture()
def memory_api():
    """The real GPU memory API (gpu-marked tests only)."""
    from workbench.backends.tensorrt.cuda import get_memory_api

    return get_memory_api()
