"""Optimization profiles: our (batch, sequence) shape spec turned into Polygraphy ``Profile``s.

BERT-family token inputs share one (batch, sequence) shape, so one ``ShapeProfile`` covers
every input the model has (two for DistilBERT/RoBERTa, three for BERT). Polygraphy's
``Profile`` is plain Python: it is built here without TensorRT and turned into an
``IOptimizationProfile`` by ``CreateConfig`` at build time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.errors import ConfigError

Shape2 = tuple[int, int]
OPT_BATCH, MAX_BATCH = 32, 64  # the scorer's batch (Runner.eval_batch_size) and headroom


@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max (batch, sequence) shapes for every 2-D token input."""

    min: Shape2
    opt: Shape2
    max: Shape2

    def __post_init__(self) -> None:
        for axis, label in ((0, "batch"), (1, "sequence")):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if not 1 <= lo <= mid <= hi:
                raise ConfigError(
                    f"profile {label} sizes must satisfy 1 <= min <= opt <= max, got "
                    f"{lo}/{mid}/{hi}; fix the batch sizes or max_length"
                )

    @classmethod
    def for_length(cls, max_length: int) -> ShapeProfile:
        """Any batch up to MAX_BATCH and any length up to ``max_length``, tuned for the scorer."""
        return cls((1, 1), (OPT_BATCH, max_length), (MAX_BATCH, max_length))

    @classmethod
    def fixed(cls, shape: Shape2) -> ShapeProfile:
        """min = opt = max: TensorRT's implicit calibrator runs at the profile's opt shape."""
        return cls(shape, shape, shape)

    def as_dict(self) -> dict[str, list[int]]:
        """JSON-ready form (part of the engine's cache key)."""
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def polygraphy_profile(profile: ShapeProfile, input_names: Sequence[str]) -> Any:
    """A Polygraphy ``Profile`` giving every input in ``input_names`` the same shapes.

    Example::

        polygraphy_profile(ShapeProfile.for_length(128), ["input_ids", "attention_mask"])
    """
    from polygraphy.backend.trt import Profile

    out = Profile()
    for name in input_names:
        out.add(name, min=profile.min, opt=profile.opt, max=profile.max)
    return out
