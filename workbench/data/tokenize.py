"""Tokenization with the model's own ``tokenizer.json`` (no torch, no hub)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import DataError, ModelError

Feed = dict[str, np.ndarray]
Inputs = list[str] | list[tuple[str, str]]
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what encode() can make
_PAD_TOKENS = ("[PAD]", "<pad>")  # BERT / WordPiece, RoBERTa / SentencePiece conventions


class TextTokenizer:
    """Turns texts into the int64 feeds BERT-family ONNX models take.

    ``input_names`` are the model's token inputs (the Workspace decides them from the model):
    ``encode`` returns exactly those, so every feed made from it fits the model.

    Example::

        tok = TextTokenizer.from_model_dir(model_dir, max_length=128)
        feed = tok.encode(["a fine film"])  # input_ids, attention_mask, token_type_ids
        pair = tok.encode(["a man sleeps"], pairs=["a person rests"])  # sentence-pair task
        distil = tok.with_inputs(("input_ids", "attention_mask"))  # a model without token types
    """

    def __init__(
        self,
        tokenizer_file: str | Path,
        max_length: int = 128,
        *,
        input_names: Sequence[str] = TOKEN_INPUTS,
        pad_token: str | None = None,
    ) -> None:
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
        self.input_names = _check_names(input_names)
        self.vocab_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.pad_token = pad_token
        self.pad_id = _special_id(self._tok, pad_token, _PAD_TOKENS, "pad") or 0
        self.unk_id = _special_id(self._tok, None, ("[UNK]", "<unk>"), "unk")
        self._tok.no_padding()
        self._tok.no_truncation()
        # What transformers sets for truncation=True, max_length: longest_first, right side.
        self._trunc = Tokenizer.from_str(self._tok.to_str())
        self._trunc.enable_truncation(max_length, strategy="longest_first", direction="right")

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | Path,
        max_length: int = 128,
        input_names: Sequence[str] = TOKEN_INPUTS,
    ) -> TextTokenizer:
        """Load ``tokenizer.json`` from a Hugging Face model folder (its pad token from
        ``tokenizer_config.json`` / ``special_tokens_map.json`` when they name one)."""
        folder = Path(model_dir)
        return cls(
            folder / "tokenizer.json",
            max_length=max_length,
            input_names=input_names,
            pad_token=_configured_token(folder, "pad_token"),
        )

    def with_inputs(self, input_names: Sequence[str]) -> TextTokenizer:
        """The same tokenizer making feeds of exactly ``input_names``."""
        return TextTokenizer(
            self.path, self.max_length, input_names=input_names, pad_token=self.pad_token
        )

    @property
    def name(self) -> str:
        """A short identity for manifests: parent folder name + vocab hash prefix."""
        return f"{self.path.parent.name}@{self.vocab_sha256[:12]}"

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer can emit (added tokens included)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_ids(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> list[list[int]]:
        """Untruncated token ids (with special tokens) of each text (or text pair)."""
        return [e.ids for e in self._tok.encode_batch(_inputs(texts, pairs))]

    def lengths(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """Untruncated token counts (with special tokens); > max_length means truncation."""
        return np.array([len(ids) for ids in self.token_ids(texts, pairs)], dtype=np.int64)

    def content_lengths(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> np.ndarray:
        """Untruncated counts of non-special tokens (no [CLS]/[SEP]/<s>...): the sanity check."""
        encs = self._tok.encode_batch(_inputs(texts, pairs))
        return np.array([len(e.ids) - sum(e.special_tokens_mask) for e in encs], dtype=np.int64)

    def encode(
        self,
        texts: Sequence[str],
        pad_to: int | None = None,
        pairs: Sequence[str] | None = None,
    ) -> Feed:
        """Encode, truncate to ``max_length`` (longest-first for pairs, as transformers does),
        pad to the longest row or ``pad_to``."""
        if len(texts) == 0:
            raise ModelError("cannot encode an empty batch of texts")
        encs = self._trunc.encode_batch(_inputs(texts, pairs))
        width = max(len(e.ids) for e in encs) if pad_to is None else pad_to
        width = min(width, self.max_length)
        n = len(encs)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        type_ids = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encs):
            row = e.ids[:width]
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            type_ids[i, : len(row)] = e.type_ids[:width]
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}
        return {k: feed[k] for k in self.input_names}


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    out = tuple(names)
    if (
        "input_ids" not in out
        or any(n not in TOKEN_INPUTS for n in out)
        or len(set(out)) < len(out)
    ):
        raise ModelError(
            f"the tokenizer makes input_ids plus any of {list(TOKEN_INPUTS[1:])}, each once; "
            f"the model asks for {list(out)}"
        )
    return out


def _special_id(tok: object, named: str | None, fallbacks: Sequence[str], what: str) -> int | None:
    """Id of the configured special token, else of the first conventional name present."""
    for token in (named, *fallbacks):
        tid = tok.token_to_id(token) if token else None  # type: ignore[attr-defined]
        if tid is not None:
            return int(tid)
    if named:
        raise ModelError(f"the {what} token {named!r} is not in tokenizer.json; save it again")
    return None


def _configured_token(folder: Path, key: str) -> str | None:
    """A special token named in the folder's tokenizer_config.json or special_tokens_map.json."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = folder / name
        if not f.is_file():
            continue
        try:
            value = json.loads(f.read_text(encoding="utf-8")).get(key)
        except (ValueError, AttributeError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value:
            return value
    return None


def _inputs(texts: Sequence[str], pairs: Sequence[str] | None) -> Inputs:
    """The tokenizers batch input: plain strings, or (first, second) tuples for pair tasks."""
    if pairs is None:
        return [str(t) for t in texts]
    if len(pairs) != len(texts):
        raise DataError(
            f"{len(texts)} texts but {len(pairs)} second texts; every row of a sentence-pair "
            "dataset needs both columns (check text_pair_column)"
        )
    return [(str(a), str(b)) for a, b in zip(texts, pairs, strict=True)]
