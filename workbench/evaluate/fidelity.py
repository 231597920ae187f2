"""Probability-space fidelity of a build to its reference: KL, max |Δp|, margin change, flips.

Logit cosine carries no information on a two-class head (it tracks agreement), so these
measures work on softmax probabilities and on per-class prediction counts, which catch
shifts such as false positives rising at equal accuracy. Pure NumPy over logits.

Example::

    fid = fidelity(fp32_logits, int8_logits, labels)
    fid.kl_mean, fid.max_abs_dp, [c.false_pos_delta for c in fid.per_class]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.errors import DataError
from workbench.results.fidelity import ClassShift, Fidelity

_EPS = 1e-12


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def kl_divergence(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-sample KL(p_ref || p) in nats (>= 0; 0 when the two agree exactly)."""
    _check_pair(ref_logits, logits)
    p, q = softmax(ref_logits), softmax(logits)
    kl = np.sum(p * (np.log(np.maximum(p, _EPS)) - np.log(np.maximum(q, _EPS))), axis=1)
    return np.maximum(kl, 0.0)


def max_abs_dp(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-sample largest absolute change of any class probability."""
    _check_pair(ref_logits, logits)
    return np.abs(softmax(logits) - softmax(ref_logits)).max(axis=1)


def margin(probs: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """p[cls] minus the largest other class probability (negative: ``cls`` is not the top)."""
    rows = np.arange(probs.shape[0])
    own = probs[rows, cls]
    other = probs.copy()
    other[rows, cls] = -np.inf
    return own - other.max(axis=1)


def margin_change(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-sample change of the margin of the reference's predicted class (negative: less sure)."""
    _check_pair(ref_logits, logits)
    cls = np.asarray(ref_logits).argmax(axis=1)
    return margin(softmax(logits), cls) - margin(softmax(ref_logits), cls)


def class_shifts(
    ref_pred: np.ndarray, pred: np.ndarray, num_classes: int, labels: np.ndarray | None = None
) -> list[ClassShift]:
    """Per-class prediction counts, flips and (with labels) false positives and recall."""
    ref_pred, pred = np.asarray(ref_pred), np.asarray(pred)
    out = []
    for c in range(num_classes):
        fp_ref = fp = -1
        rec_ref = rec = float("nan")
        if labels is not None:
            y = np.asarray(labels)
            fp_ref = int(np.sum((ref_pred == c) & (y != c)))
            fp = int(np.sum((pred == c) & (y != c)))
            pos = y == c
            if pos.any():
                rec_ref = float(np.mean(ref_pred[pos] == c))
                rec = float(np.mean(pred[pos] == c))
        out.append(
            ClassShift(
                label=c,
                predicted_ref=int(np.sum(ref_pred == c)),
                predicted=int(np.sum(pred == c)),
                flips_in=int(np.sum((pred == c) & (ref_pred != c))),
                flips_out=int(np.sum((ref_pred == c) & (pred != c))),
                false_pos_ref=fp_ref,
                false_pos=fp,
                recall_ref=rec_ref,
                recall=rec,
            )
        )
    return out


def fidelity(
    ref_logits: np.ndarray, logits: np.ndarray, labels: Sequence[int] | np.ndarray | None = None
) -> Fidelity:
    """All probability-space measures of ``logits`` against ``ref_logits`` in one record."""
    _check_pair(ref_logits, logits)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    if y is not None and y.shape[0] != np.asarray(logits).shape[0]:
        raise DataError(f"{y.shape[0]} labels for {np.asarray(logits).shape[0]} samples")
    kl, dp, dm = (
        kl_divergence(ref_logits, logits),
        max_abs_dp(ref_logits, logits),
        margin_change(ref_logits, logits),
    )
    ref_pred, pred = np.asarray(ref_logits).argmax(axis=1), np.asarray(logits).argmax(axis=1)
    return Fidelity(
        n=int(kl.size),
        agreement=float(np.mean(ref_pred == pred)),
        kl_mean=float(kl.mean()),
        kl_p99=float(np.percentile(kl, 99)),
        kl_max=float(kl.max()),
        mean_abs_dp=float(dp.mean()),
        max_abs_dp=float(dp.max()),
        margin_change_mean=float(dm.mean()),
        margin_change_min=float(dm.min()),
        flips=int(np.sum(ref_pred != pred)),
        per_class=class_shifts(ref_pred, pred, np.asarray(logits).shape[1], y),
    )


def _check_pair(ref_logits: np.ndarray, logits: np.ndarray) -> None:
    a, b = np.asarray(ref_logits), np.asarray(logits)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] == 0:
        raise DataError(
            f"logits of shape {a.shape} and {b.shape} cannot be compared; pass two non-empty "
            "[samples, classes] arrays of the same test set"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataError("logits contain NaN/Inf; the build is broken, fidelity is undefined")
