"""The classifier as a torch module: token ids in, logits out (what ONNX export traces).

Imports torch and transformers at module level: only torch-path code imports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.backends.pytorch.artifact import ModelArtifact
from workbench.errors import ModelError


class MeanPoolClassifier(nn.Module):
    """BERT encoder -> masked mean pooling -> optional L2 norm -> linear head."""

    def __init__(self, encoder: nn.Module, num_labels: int, normalize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        hidden = int(encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
        self.head = nn.Linear(hidden, num_labels)

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sentence embeddings (mean over non-padded tokens), before the head."""
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        tokens = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask, token_type_ids))


def load_encoder(encoder_dir: str | Path) -> nn.Module:
    """Load a Hugging Face encoder folder offline (no hub access)."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load encoder from {encoder_dir} ({exc})") from exc
    return model.eval()


def load_torch_classifier(art: ModelArtifact) -> MeanPoolClassifier:
    """Build the torch classifier of a prepared artifact (CPU, eval mode, fp32)."""
    model = MeanPoolClassifier(load_encoder(art.encoder_dir), art.num_labels, art.normalize)
    head = np.load(art.head_file)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(head["weight"].astype(np.float32)))
        model.head.bias.copy_(torch.from_numpy(head["bias"].astype(np.float32)))
    return model.eval()
