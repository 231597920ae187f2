"""How well a calibration set represents the traffic it will meet.

Compares token lengths (PSI, Kolmogorov–Smirnov), labels (total variation, Jensen–Shannon),
word-piece coverage, ``[UNK]`` and truncation rates, and gives a verdict: PSI above 0.25 is
"not representative", 0.1–0.25 "drifting". The record is saved as ``calibset_report.json``
in a run directory and in the calibration set's manifest; the HTML report renders it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.data.sampling import quantile_bins
from workbench.data.shapes import length_stats
from workbench.data.tokenize import TextTokenizer
from workbench.errors import DataError
from workbench.results.records import SCHEMA_VERSION
from workbench.results.representativeness import LengthSummary, RepresentativenessReport

REPRESENTATIVE, DRIFTING, NOT_REPRESENTATIVE = "representative", "drifting", "not representative"
VERDICTS = (REPRESENTATIVE, DRIFTING, NOT_REPRESENTATIVE)
THRESHOLDS: dict[str, float] = {
    "psi_drifting": 0.10,
    "psi_not_representative": 0.25,
    "label_tv_drifting": 0.15,
    "truncation_gap_drifting": 0.05,
    "unk_gap_drifting": 0.01,
    "vocab_coverage_gap_drifting": 0.10,
}
MIN_TARGET = 50  # fewer target texts than this: the verdict is at best "drifting"
_MIN_PER_BIN = 20  # PSI uses at most n_calibration / 20 bins (2..10): small sets get coarse bins


@dataclass(frozen=True)
class TextProfile:
    """What the checks need of one sample: token lengths, optional labels and token ids."""

    lengths: np.ndarray
    labels: np.ndarray | None = None
    token_ids: list[list[int]] | None = field(default=None, repr=False)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        tokenizer: TextTokenizer,
        labels: Sequence[int] | np.ndarray | None = None,
    ) -> TextProfile:
        """Tokenize once (untruncated) and keep lengths + ids."""
        ids = tokenizer.token_ids(list(texts))
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        lab = None if labels is None else np.asarray(labels, dtype=np.int64)
        if lab is not None and (lab < 0).any():
            lab = None  # partly unlabelled: treat as unlabelled
        return cls(lengths, lab, ids)


def psi(expected: np.ndarray, actual: np.ndarray, edges: np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected`` over ``edges`` bins.

    Counts get +0.5 per bin (Laplace) so an empty bin gives a large, finite value.
    """
    k = len(edges) + 1
    e = (_counts(expected, edges) + 0.5) / (len(expected) + 0.5 * k)
    a = (_counts(actual, edges) + 0.5) / (len(actual) + 0.5 * k)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_bins(target: np.ndarray, n_calibration: int) -> np.ndarray:
    """Inner PSI bin edges: target quantiles, as many bins as the smaller sample supports."""
    n_bins = int(np.clip(n_calibration // _MIN_PER_BIN, 2, 10))
    return quantile_bins(target, n_bins)


def _counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    bins = np.searchsorted(edges, np.asarray(x), side="left")
    return np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)


def _shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return _counts(x, edges) / max(len(x), 1)


def _summary(lengths: np.ndarray, max_length: int) -> LengthSummary:
    return LengthSummary(**length_stats(lengths, max_length))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _TokenStats:
    token_cov: float | None = None
    type_cov: float | None = None
    reference_cov: float | None = None
    cal_unk: float | None = None
    tgt_unk: float | None = None


def _flat(ids: list[list[int]]) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.int64) for x in ids] or [np.zeros(0, np.int64)])


def _reference_coverage(tgt_ids: list[list[int]], n_cal: int, seed: int = 0) -> float | None:
    """Coverage a same-size random sample of the target reaches on the rest of the target."""
    m = min(n_cal, len(tgt_ids) // 2)
    if m < 1:
        return None
    order = np.random.default_rng(seed).permutation(len(tgt_ids))
    seen = np.unique(_flat([tgt_ids[i] for i in order[:m]]))
    held = _flat([tgt_ids[i] for i in order[m:]])
    return float(np.isin(held, seen).mean()) if held.size else None


def _token_stats(cal: TextProfile, tgt: TextProfile, unk_id: int | None) -> _TokenStats:
    if cal.token_ids is None or tgt.token_ids is None:
        return _TokenStats()
    cal_ids, tgt_ids = _flat(cal.token_ids), _flat(tgt.token_ids)
    cal_types = np.unique(cal_ids)
    return _TokenStats(
        token_cov=float(np.isin(tgt_ids, cal_types).mean()),
        type_cov=float(np.isin(np.unique(tgt_ids), cal_types).mean()),
        reference_cov=_reference_coverage(tgt.token_ids, len(cal.token_ids)),
        cal_unk=None if unk_id is None else float((cal_ids == unk_id).mean()),
        tgt_unk=None if unk_id is None else float((tgt_ids == unk_id).mean()),
    )


def _label_shares(
    cal: TextProfile, tgt: TextProfile, n_labels: int
) -> tuple[list[float] | None, list[float] | None, float | None, float | None]:
    if cal.labels is None or tgt.labels is None or len(cal.labels) == 0 or len(tgt.labels) == 0:
        return None, None, None, None
    from scipy.spatial.distance import jensenshannon

    k = max(n_labels, int(cal.labels.max()) + 1, int(tgt.labels.max()) + 1)
    p = np.bincount(cal.labels, minlength=k) / len(cal.labels)
    q = np.bincount(tgt.labels, minlength=k) / len(tgt.labels)
    tv = float(0.5 * np.abs(p - q).sum())
    js = float(jensenshannon(p, q, base=2))
    return p.tolist(), q.tolist(), tv, js


def assess(
    calibration: TextProfile,
    target: TextProfile,
    max_length: int,
    unk_id: int | None = None,
    label_names: Sequence[str] = (),
    target_name: str = "target",
    calibration_set: str = "",
    manifest_sha256: str = "",
) -> RepresentativenessReport:
    """Compare a calibration sample with a target sample; the verdict uses ``THRESHOLDS``.

    Example::

        cal = TextProfile.from_texts(cal_texts, tok)
        report = assess(cal, TextProfile.from_texts(traffic, tok), max_length=tok.max_length,
                        unk_id=tok.unk_id, target_name="traffic.txt")
        report.verdict  # "representative" | "drifting" | "not representative"
    """
    from scipy.stats import ks_2samp

    from workbench.data.shapes import suggest_profile

    if len(calibration.lengths) == 0 or len(target.lengths) == 0:
        raise DataError("representativeness needs a non-empty calibration set and target")
    edges = psi_bins(target.lengths, len(calibration.lengths))
    length_psi = psi(target.lengths, calibration.lengths, edges)
    ks = ks_2samp(calibration.lengths, target.lengths)
    cal_sum = _summary(calibration.lengths, max_length)
    tgt_sum = _summary(target.lengths, max_length)
    cal_share, tgt_share, tv, js = _label_shares(calibration, target, len(label_names))
    tokens = _token_stats(calibration, target, unk_id)
    warnings = _warnings(length_psi, cal_sum, tgt_sum, tv, tokens)
    if len(target.lengths) < MIN_TARGET:
        warnings.append(
            f"the target has only {len(target.lengths)} texts; these numbers are unreliable "
            f"below {MIN_TARGET} (collect a larger traffic sample)"
        )
    verdict = REPRESENTATIVE
    if length_psi > THRESHOLDS["psi_not_representative"]:
        verdict = NOT_REPRESENTATIVE
    elif warnings:
        verdict = DRIFTING
    return RepresentativenessReport(
        schema_version=SCHEMA_VERSION,
        calibration_set=calibration_set,
        manifest_sha256=manifest_sha256,
        target=target_name,
        max_length=max_length,
        verdict=verdict,
        warnings=warnings,
        thresholds=dict(THRESHOLDS),
        length_psi=length_psi,
        length_ks_statistic=float(ks.statistic),
        length_ks_pvalue=float(ks.pvalue),
        length_bin_edges=[float(e) for e in edges],
        calibration_bin_share=_shares(calibration.lengths, edges).tolist(),
        target_bin_share=_shares(target.lengths, edges).tolist(),
        calibration_lengths=cal_sum,
        target_lengths=tgt_sum,
        label_names=list(label_names),
        calibration_label_share=cal_share,
        target_label_share=tgt_share,
        label_tv_distance=tv,
        label_js_distance=js,
        vocab_token_coverage=tokens.token_cov,
        vocab_type_coverage=tokens.type_cov,
        vocab_token_coverage_reference=tokens.reference_cov,
        calibration_unk_rate=tokens.cal_unk,
        target_unk_rate=tokens.tgt_unk,
        profile_suggestion=suggest_profile(target.lengths, max_length),
    )


def _warnings(
    length_psi: float,
    cal: LengthSummary,
    tgt: LengthSummary,
    tv: float | None,
    tokens: _TokenStats,
) -> list[str]:
    t = THRESHOLDS
    out: list[str] = []
    if length_psi > t["psi_drifting"]:
        level = "not representative" if length_psi > t["psi_not_representative"] else "drifting"
        out.append(
            f"token-length PSI {length_psi:.2f} ({level}; limits {t['psi_drifting']}/"
            f"{t['psi_not_representative']}): calibration p50/p90 {cal.p50:.0f}/{cal.p90:.0f} "
            f"vs target {tgt.p50:.0f}/{tgt.p90:.0f} tokens"
        )
    gap = tgt.truncated_share - cal.truncated_share
    if gap > t["truncation_gap_drifting"]:
        out.append(
            f"{tgt.truncated_share:.0%} of the target is truncated at max length but only "
            f"{cal.truncated_share:.0%} of the calibration set"
        )
    if tv is not None and tv > t["label_tv_drifting"]:
        out.append(f"label mix differs: total variation {tv:.2f} (limit {t['label_tv_drifting']})")
    cov, ref = tokens.token_cov, tokens.reference_cov
    if cov is not None and ref is not None and ref - cov > t["vocab_coverage_gap_drifting"]:
        out.append(
            f"the calibration set covers {cov:.0%} of the target's word-piece occurrences; a "
            f"random target sample of the same size covers {ref:.0%}"
        )
    cal_unk, tgt_unk = tokens.cal_unk, tokens.tgt_unk
    if cal_unk is not None and tgt_unk is not None and tgt_unk - cal_unk > t["unk_gap_drifting"]:
        out.append(f"[UNK] rate: target {tgt_unk:.1%} vs calibration {cal_unk:.1%}")
    return out
