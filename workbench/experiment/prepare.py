"""``workbench prepare``'s work: the default classifier trained (or reused) and exported once.

Example::

    model, onnx = prepare_default_model(PrepareOptions(data_file="reviews.csv"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.export import ExportInfo
    from workbench.backends.pytorch.artifact import ModelArtifact


@dataclass(frozen=True)
class PrepareOptions:
    """Which data the classifier trains on, from which encoder, and how."""

    data_file: str = ""  # "": the shipped Rotten Tomatoes reviews
    text_column: str = "text"
    label_column: str = "label"
    base_model: str | None = None  # a Hugging Face encoder folder (default all-MiniLM-L6-v2)
    finetune: bool | None = None  # None: fine-tune on a GPU, fit a head on a CPU
    max_train: int | None = None

    def __post_init__(self) -> None:
        if self.max_train is not None and self.max_train < 1:
            raise ConfigError(f"--max-train {self.max_train}: use 1 or more training samples")


def prepare_default_model(opts: PrepareOptions) -> tuple[ModelArtifact, ExportInfo]:
    """The classifier (cached by content) and its verified ONNX export (cached)."""
    from workbench.backends.onnxruntime.export import export_onnx
    from workbench.backends.pytorch.prepare import prepare_classifier
    from workbench.data.datasets import load_labelled_file, load_rotten_tomatoes, make_splits

    data = (
        load_labelled_file(opts.data_file, opts.text_column, opts.label_column)
        if opts.data_file
        else load_rotten_tomatoes()
    )
    art = prepare_classifier(
        make_splits(data),
        base_model=opts.base_model,
        finetune=opts.finetune,
        max_train=opts.max_train,
    )
    return art, export_onnx(art)
