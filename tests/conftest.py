"""Shared fixtures: a tiny BERT classifier and its ONNX export, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_bert import make_tiny_model


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never write into the working directory or the user's cache."""
    os.environ["WORKBENCH_CACHE"] = str(tmp_path_factory.mktemp("wb-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """A prepared tiny random BERT classifier (ModelArtifact)."""
    pytest.importorskip("torch", reason="making the tiny model needs torch (extra: torch)")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier exported to ONNX (input_ids/attention_mask/token_type_ids -> logits)."""
    from workbench.backends.onnxruntime.export import export_onnx

    info = export_onnx(tiny_model, tmp_path_factory.mktemp("tiny-onnx"))
    return Path(info.onnx_path)
