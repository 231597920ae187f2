"""PyTorch runner: the FP32 reference on CPU (GPU precisions build on the same class)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from workbench.backends.base import Feed, Runner, TensorSpec
from workbench.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from torch import nn

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("fp32", "fp16", "bf16")


class TorchRunner(Runner):
    """Runs a classifier ``nn.Module`` (input_ids, attention_mask, token_type_ids -> logits).

    Example::

        with TorchRunner(load_torch_classifier(art)) as r:
            logits = r.infer(feed)["logits"]
    """

    backend = "pytorch"

    def __init__(
        self,
        model: nn.Module,
        name: str = "torch-fp32",
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(
                "the PyTorch backend needs torch: pip install -e '.[torch]'"
            ) from exc
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} unknown; use one of {PRECISIONS}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                "CUDA requested but torch sees no GPU; run on a GPU machine or use --device cpu"
            )
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            precision
        ]
        self._model = model.to(device=device, dtype=self._dtype).eval()
        self.name = name
        self.precision = precision
        self.device = device

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(n, "int64", ("batch", "sequence")) for n in INPUTS]

    def _infer(self, feed: Feed) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            t = {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in feed.items()}
            logits = self._model(**t)
            return {"logits": logits.float().cpu().numpy()}

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]
