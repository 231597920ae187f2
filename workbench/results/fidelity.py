"""Fidelity records: how far a build's probabilities and per-class predictions moved from the
reference build's (computed by ``workbench.evaluate.fidelity``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassShift:
    """How one class's predictions moved between the reference and the candidate."""

    label: int
    predicted_ref: int  # samples the reference assigns to this class
    predicted: int  # samples the candidate assigns to this class
    flips_in: int  # candidate says this class, reference said another
    flips_out: int  # reference said this class, candidate says another
    false_pos_ref: int  # -1 where no labels were given
    false_pos: int
    recall_ref: float  # NaN where no labels or no sample of this class
    recall: float

    @property
    def false_pos_delta(self) -> int:
        return self.false_pos - self.false_pos_ref

    @property
    def recall_delta(self) -> float:
        return self.recall - self.recall_ref


@dataclass(frozen=True)
class Fidelity:
    """Summary of how far a candidate's probabilities moved from the reference's."""

    n: int
    agreement: float
    kl_mean: float  # mean KL(p_ref || p) in nats
    kl_p99: float
    kl_max: float
    mean_abs_dp: float  # mean over samples of max_c |Δp_c|
    max_abs_dp: float
    margin_change_mean: float  # mean change of the reference class's probability margin
    margin_change_min: float  # the worst (most negative) change
    flips: int
    per_class: list[ClassShift]
