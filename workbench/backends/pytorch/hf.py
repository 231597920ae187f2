"""A user's Hugging Face sequence-classification folder: checked cheaply, loaded with its own head.

``inspect_hf_folder`` reads only config.json and tokenizer.json (no torch), so every
problem with the folder surfaces before any expensive stage; ``load_hf_classifier``
then gives the torch module that export and the PyTorch runner share.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import BackendUnavailableError, ModelError
from workbench.fileio import sha256_file, sha256_json

if TYPE_CHECKING:
    import torch

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
HF_WRAPPER = "model"  # attribute holding the HF classifier in load_hf_classifier's wrapper
NO_POSITION_LIMIT = 1_000_000  # models without absolute position embeddings
_PAD_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet"}  # from pad_token_id + 1
_DEFAULT_LABEL = re.compile(r"^LABEL_(\d+)$")
_SAVE_HINT = "save it with model.save_pretrained(folder)"


@dataclass(frozen=True)
class HFModelInfo:
    """What the workbench needs to know about an HF classifier folder, without loading it."""

    path: str  # absolute folder
    labels: list[str]  # config.id2label in output order ("LABEL_0"-style kept as given)
    input_names: tuple[str, ...]  # what the tokenizer makes and forward() uses (hf_input_names)
    model_type: str  # config.model_type, e.g. "bert"
    architecture: str  # config.architectures[0] or ""
    vocab_size: int  # config.vocab_size (0 when the config has none)
    max_positions: int  # config.max_position_embeddings (NO_POSITION_LIMIT when absent)
    content_key: str  # sha256 over config.json + weight files + tokenizer.json


def inspect_hf_folder(path: str | Path) -> HFModelInfo:
    """Check an HF classifier folder and describe it; ModelError (one line, the fix) if unusable.

    Example::

        info = inspect_hf_folder("models/my-sst2-bert")
        info.labels  # ['negative', 'positive']
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ModelError(
            f"{folder} is not a folder; [model] path needs a Hugging Face model folder "
            f"({_SAVE_HINT}) or an .onnx file"
        )
    config = _read_config(folder)
    weights = _weight_files(folder)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelError(
            f"{folder} has no tokenizer.json; save it with "
            "AutoTokenizer.from_pretrained(...).save_pretrained(folder)"
        )
    labels = _labels(config, folder)
    architecture = str((config.get("architectures") or [""])[0])
    if not architecture.endswith("ForSequenceClassification") and _default_labels(config):
        raise ModelError(
            f"{folder} ({architecture or config.get('model_type', '?')}) is an encoder without a "
            "classification head; fine-tune one (AutoModelForSequenceClassification, then "
            "save_pretrained) or use `[model] default = true` to validate the workbench's own "
            "classifier"
        )
    vocab_size = int(config.get("vocab_size") or 0)
    tok_vocab = _tokenizer_vocab_size(tokenizer_file)
    if vocab_size and tok_vocab > vocab_size:
        raise ModelError(
            f"{folder}: tokenizer.json has {tok_vocab} tokens but the model's vocab_size is "
            f"{vocab_size}, so some token ids would index past its embeddings; save the "
            "tokenizer the model was trained with (or resize_token_embeddings and fine-tune)"
        )
    names = hf_input_names(folder, config)
    key = sha256_json(
        {
            "config": sha256_file(folder / "config.json"),
            "weights": {w.name: sha256_file(w) for w in weights},
            "tokenizer": sha256_file(tokenizer_file),
        }
    )
    return HFModelInfo(
        path=str(folder),
        labels=labels,
        input_names=tuple(names),
        model_type=str(config.get("model_type", "")),
        architecture=architecture,
        vocab_size=vocab_size,
        max_positions=_usable_positions(config),
        content_key=key,
    )


def hf_input_names(folder: Path, config: dict[str, Any]) -> tuple[str, ...]:
    """The token inputs of the folder's classifier: what its tokenizer makes
    (``model_input_names``) and its ``forward`` takes (``inspect.signature``), in
    ``TOKEN_INPUTS`` order; ``token_type_ids`` only where the model has a type embedding
    (DeBERTa-v3 takes the argument but has ``type_vocab_size = 0``).

    Example::

        hf_input_names(folder, config)  # DistilBERT: ('input_ids', 'attention_mask')
    """
    made = _tokenizer_input_names(folder)
    taken = _forward_parameters(config)
    names = [n for n in TOKEN_INPUTS if n in made and (taken is None or n in taken)]
    if "token_type_ids" in names and int(config.get("type_vocab_size", 1) or 0) == 0:
        names.remove("token_type_ids")
    if "input_ids" not in names:
        raise ModelError(
            f"{folder}: the tokenizer makes {sorted(made)} and the model takes "
            f"{sorted(taken or [])}; a text classifier needs input_ids from both"
        )
    return tuple(names)


def _tokenizer_input_names(folder: Path) -> set[str]:
    """``model_input_names`` of the folder's tokenizer (transformers' own loader decides)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:  # core install: BERT's three, the loader narrows them down later
        return set(TOKEN_INPUTS)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"transformers cannot load the tokenizer in {folder} ({exc}); save it with "
            "AutoTokenizer.from_pretrained(...).save_pretrained(folder)"
        ) from exc
    return set(tok.model_input_names)


def _forward_parameters(config: dict[str, Any]) -> set[str] | None:
    """Parameter names of the sequence classifier's ``forward`` (None: class unknown)."""
    import inspect

    try:
        import transformers
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as NAMES,
        )
    except ImportError:
        return None
    arch = [str(a) for a in config.get("architectures") or []]
    name = NAMES.get(str(config.get("model_type", ""))) or next(iter(arch), "")
    cls = getattr(transformers, name, None) if name else None
    if cls is None:
        return None
    return set(inspect.signature(cls.forward).parameters)


def _usable_positions(config: dict[str, Any]) -> int:
    """Token positions the model can embed: RoBERTa-style models number positions from
    pad_token_id + 1, so 514 position embeddings hold 512 tokens."""
    n = int(config.get("max_position_embeddings") or NO_POSITION_LIMIT)
    if config.get("model_type") in _PAD_OFFSET_POSITIONS and n < NO_POSITION_LIMIT:
        n -= int(config.get("pad_token_id") or 0) + 1
    return n


def _read_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise ModelError(f"{folder} has no config.json; it is not a saved model ({_SAVE_HINT})")
    try:
        data = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{cfg} is not valid JSON ({exc}); {_SAVE_HINT} again") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{cfg} is not a model config (not a JSON object); {_SAVE_HINT} again")
    return data


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ModelError(
            f"{folder} has no weights (*.safetensors or pytorch_model.bin); {_SAVE_HINT}"
        )
    return files


def _labels(config: dict[str, Any], folder: Path) -> list[str]:
    """Label names in output order from id2label (transformers' default: LABEL_0, LABEL_1)."""
    id2label = config.get("id2label")
    if not id2label:
        n = int(config.get("num_labels") or 2)
        return [f"LABEL_{i}" for i in range(n)]
    try:
        by_index = {int(k): str(v) for k, v in dict(id2label).items()}
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{folder}/config.json id2label has non-integer keys ({exc}); fix id2label"
        ) from exc
    if sorted(by_index) != list(range(len(by_index))):
        raise ModelError(
            f"{folder}/config.json id2label keys {sorted(by_index)} are not 0..n-1; fix id2label"
        )
    return [by_index[i] for i in range(len(by_index))]


def _default_labels(config: dict[str, Any]) -> bool:
    """True when id2label is absent or only transformers' placeholder LABEL_i names."""
    id2label = config.get("id2label") or {}
    return all(
        (m := _DEFAULT_LABEL.match(str(v))) is not None and m.group(1) == str(k)
        for k, v in dict(id2label).items()
    )


def _tokenizer_vocab_size(tokenizer_file: Path) -> int:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_file))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ModelError(
            f"{tokenizer_file} is not a valid tokenizer.json ({exc}); save it again with "
            "AutoTokenizer.from_pretrained(...).save_pretrained(folder)"
        ) from exc
    return int(tok.get_vocab_size(with_added_tokens=True))


def load_hf_classifier(info: HFModelInfo) -> torch.nn.Module:
    """The folder's own classifier (fp32, eval, CPU): ``forward(ids, mask, types=None) -> logits``.

    Example::

        model = load_hf_classifier(inspect_hf_folder(folder))
        logits = model(input_ids, attention_mask)  # [batch, num_labels]
    """
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForSequenceClassification
    except ImportError as exc:
        raise BackendUnavailableError(
            "loading a Hugging Face model needs torch and transformers; install the extra: "
            "pip install -e '.[torch]'"
        ) from exc
    try:
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            info.path, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"transformers cannot load {info.path} as a sequence classifier ({exc}); "
            "check that it was saved with save_pretrained by a compatible transformers version"
        ) from exc
    missing = list(loading.get("missing_keys") or [])
    if missing:
        raise ModelError(
            f"{info.path} lacks weights for {missing[:4]}{' ...' if len(missing) > 4 else ''}; "
            "transformers would fill them with random values — save the fine-tuned model again"
        )
    return _wrapper_class()(model.float().eval().to("cpu"), info.input_names)


@functools.cache
def _wrapper_class() -> type:
    """The torch wrapper class, defined on first use so importing this module needs no torch."""
    import inspect

    import torch

    class HFClassifier(torch.nn.Module):
        """forward(input_ids, attention_mask=None, token_type_ids=None) -> logits [batch, labels];
        ``input_names`` are the inputs the model uses (runners and the export feed those)."""

        def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]) -> None:
            super().__init__()
            self.model = model  # named HF_WRAPPER: ONNX node scopes start with it
            params = inspect.signature(model.forward).parameters
            self.input_names = tuple(n for n in input_names if n in params)

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            kwargs = {k: v for k, v in given.items() if v is not None and k in self.input_names}
            out = self.model(input_ids=input_ids, **kwargs)
            return out[0] if isinstance(out, tuple) else out.logits

    return HFClassifier
