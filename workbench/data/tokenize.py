"""Tokenization with the model's own ``tokenizer.json`` (no torch, no hub)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import ModelError

Feed = dict[str, np.ndarray]


class TextTokenizer:
    """Turns texts into the int64 feeds BERT-family ONNX models take.

    Example::

        tok = TextTokenizer.from_model_dir(model_dir, max_length=128)
        feed = tok.encode(["a fine film"])  # input_ids, attention_mask, token_type_ids
    """

    def __init__(self, tokenizer_file: str | Path, max_length: int = 128) -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_file)
        if not path.is_file():
            raise ModelError(
                f"tokenizer file {path} not found; a model directory needs a tokenizer.json "
                "(save it with AutoTokenizer.save_pretrained)"
            )
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ModelError(f"{path} is not a valid tokenizer.json ({exc})") from exc
        if max_length < 8:
            raise ModelError(f"max_length {max_length} is too small; use at least 8")
        self.path = path
        self.max_length = max_length
        self.vocab_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.pad_id = self._tok.token_to_id("[PAD]") or 0
        self.unk_id = self._tok.token_to_id("[UNK]")
        self._tok.no_padding()
        self._tok.no_truncation()

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, max_length: int = 128) -> TextTokenizer:
        """Load ``tokenizer.json`` from a Hugging Face model folder."""
        return cls(Path(model_dir) / "tokenizer.json", max_length=max_length)

    @property
    def name(self) -> str:
        """A short identity for manifests: parent folder name + vocab hash prefix."""
        return f"{self.path.parent.name}@{self.vocab_sha256[:12]}"

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Untruncated token ids (with special tokens) of each text."""
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Untruncated token counts (with special tokens); > max_length means truncation."""
        return np.array([len(ids) for ids in self.token_ids(texts)], dtype=np.int64)

    def encode(self, texts: Sequence[str], pad_to: int | None = None) -> Feed:
        """Encode, truncate to ``max_length``, pad to the longest text (or ``pad_to``)."""
        if len(texts) == 0:
            raise ModelError("cannot encode an empty batch of texts")
        encs = self._tok.encode_batch([str(t) for t in texts])
        ids = [e.ids[: self.max_length] for e in encs]
        types = [e.type_ids[: self.max_length] for e in encs]
        for i, e in enumerate(encs):  # keep [SEP] at the end after truncation
            if len(e.ids) > self.max_length:
                ids[i][-1] = e.ids[-1]
        width = max(len(x) for x in ids) if pad_to is None else pad_to
        if width > self.max_length:
            width = self.max_length
        n = len(ids)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        type_ids = np.zeros((n, width), dtype=np.int64)
        for i, (row, trow) in enumerate(zip(ids, types, strict=True)):
            row = row[:width]
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            type_ids[i, : len(row)] = trow[:width]
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}
