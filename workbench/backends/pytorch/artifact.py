"""The prepared classifier on disk: an HF encoder folder, a linear head and metadata.

Layout of a model directory::

    encoder/               Hugging Face folder (config.json, model.safetensors, tokenizer.json)
    head.npz               weight [num_labels, hidden], bias [num_labels]
    workbench_model.json   labels, pooling, max_length, how the head was trained

Nothing here imports torch, so the ONNX Runtime path can read metadata cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ModelError
from workbench.fileio import sha256_json

META_FILE = "workbench_model.json"
ENCODER_DIR = "encoder"
HEAD_FILE = "head.npz"


@dataclass(frozen=True)
class ModelArtifact:
    """A prepared classifier: mean-pooled (optionally L2-normalized) encoder + linear head."""

    path: Path
    labels: list[str]
    max_length: int
    pooling: str  # "mean"
    normalize: bool
    base_model: str
    head_kind: str  # "logreg" (frozen encoder) | "finetuned"
    training: dict[str, Any]

    @property
    def encoder_dir(self) -> Path:
        return self.path / ENCODER_DIR

    @property
    def head_file(self) -> Path:
        return self.path / HEAD_FILE

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def content_key(self) -> str:
        """Hash of the metadata (which includes the hash of the weights it was made from)."""
        return sha256_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "base_model": self.base_model,
            "head_kind": self.head_kind,
            "training": self.training,
        }

    def save_meta(self) -> None:
        from workbench.fileio import atomic_write_json

        atomic_write_json(self.path / META_FILE, self.to_json())


def load_artifact(path: str | Path) -> ModelArtifact:
    """Read a prepared model directory; a missing or partial one raises ModelError."""
    p = Path(path)
    meta = p / META_FILE
    if not meta.is_file():
        raise ModelError(
            f"{p} is not a prepared workbench model (no {META_FILE}); run `workbench prepare`"
        )
    try:
        data = json.loads(meta.read_text())
        art = ModelArtifact(
            path=p,
            labels=list(data["labels"]),
            max_length=int(data["max_length"]),
            pooling=str(data["pooling"]),
            normalize=bool(data["normalize"]),
            base_model=str(data["base_model"]),
            head_kind=str(data["head_kind"]),
            training=dict(data.get("training", {})),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(
            f"{meta} is corrupt ({exc}); delete {p} and run `workbench prepare`"
        ) from exc
    for needed in (
        art.encoder_dir / "config.json",
        art.encoder_dir / "tokenizer.json",
        art.head_file,
    ):
        if not needed.exists():
            raise ModelError(f"{needed} is missing; delete {p} and run `workbench prepare` again")
    return art
