"""Task accuracy and output fidelity per sample: predictions, metrics, Parquet files."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.backends.base import Feed, Runner
from workbench.evaluate.scorer import score_feeds
from workbench.fileio import atomic_write_with
from workbench.results.records import AccuracyResult

PREDICTIONS_DIR = "predictions"
SAMPLES_FILE = "test_samples.parquet"


def predict_logits(
    runner: Runner,
    texts: Sequence[str],
    tokenizer: object,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    pairs: Sequence[str] | None = None,
) -> np.ndarray:
    """Logits for every text (or text pair), in input order; length-sorted batches keep
    padding small. ``batch_size`` defaults to the runner's ``eval_batch_size``. The batches
    run through the one scorer (``evaluate.scorer.score_feeds``)."""
    batch_size = batch_size or runner.eval_batch_size
    order = length_order(tokenizer, texts, pairs)
    batches = [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]

    def feeds() -> Iterator[Feed]:
        for idx in batches:
            second = None if pairs is None else [pairs[i] for i in idx]
            yield tokenizer.encode([texts[i] for i in idx], pairs=second)  # type: ignore[attr-defined]

    out: np.ndarray | None = None
    for b, (idx, outputs) in enumerate(
        zip(batches, score_feeds(runner, feeds(), ["logits"]), strict=True)
    ):
        logits = outputs["logits"]
        if out is None:
            out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
        if progress:
            progress(b + 1, len(batches))
    assert out is not None  # texts is non-empty (checked by the caller)
    return out


def length_order(
    tokenizer: object, texts: Sequence[str], pairs: Sequence[str] | None = None
) -> np.ndarray:
    """Row indices sorted by token length (stable): the order ``predict_logits`` batches rows
    in. Dynamic INT8 takes one activation range per batch, so whatever must see the gate's
    predictions (the search's halves) batches in this order too."""
    return np.argsort(tokenizer.lengths(texts, pairs=pairs), kind="stable")  # type: ignore[attr-defined]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity (1.0 where both rows are zero)."""
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)


def accuracy_result(
    logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    num_labels: int,
    predictions_file: str,
) -> AccuracyResult:
    """Metrics (scikit-learn) and fidelity to the reference build's logits."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    from workbench.evaluate.fidelity import fidelity

    if not np.all(np.isfinite(logits)):
        bad = int(np.argwhere(~np.isfinite(logits))[0][0])
        from workbench.errors import ModelError

        raise ModelError(f"the build produced NaN/Inf logits (first at test sample {bad})")
    pred = logits.argmax(axis=1)
    ref_pred = reference_logits.argmax(axis=1)
    cos = cosine_rows(logits, reference_logits)
    return AccuracyResult(
        n=len(labels),
        accuracy=float(accuracy_score(labels, pred)),
        macro_f1=float(f1_score(labels, pred, average="macro")),
        agreement=float(np.mean(pred == ref_pred)),
        logit_max_abs_err=float(np.max(np.abs(logits - reference_logits))),
        logit_cosine_mean=float(np.mean(cos)),
        logit_cosine_min=float(np.min(cos)),
        fidelity=fidelity(reference_logits, logits, labels),
        confusion=confusion_matrix(labels, pred, labels=list(range(num_labels))).tolist(),
        predictions_file=predictions_file,
    )


def save_predictions(run_dir: Path, build: str, labels: np.ndarray, logits: np.ndarray) -> str:
    """Write per-sample predictions as Parquet; returns the path relative to ``run_dir``."""
    rel = f"{PREDICTIONS_DIR}/{build}.parquet"
    df = pd.DataFrame(
        {
            "idx": np.arange(len(labels), dtype=np.int64),
            "label": labels.astype(np.int64),
            "pred": logits.argmax(axis=1).astype(np.int64),
            "logits": [row.astype(float).tolist() for row in logits],
        }
    )
    atomic_write_with(run_dir / rel, lambda tmp: df.to_parquet(tmp, index=False))
    return rel


def save_test_samples(run_dir: Path, texts: Sequence[str], labels: np.ndarray) -> str:
    """Write the test texts once per run (the report shows flipped samples from it)."""
    df = pd.DataFrame(
        {"idx": np.arange(len(texts), dtype=np.int64), "text": list(texts), "label": labels}
    )
    atomic_write_with(run_dir / SAMPLES_FILE, lambda tmp: df.to_parquet(tmp, index=False))
    return SAMPLES_FILE


def load_predictions(run_dir: str | Path, predictions_file: str) -> pd.DataFrame:
    """Read a build's per-sample predictions back."""
    return pd.read_parquet(Path(run_dir) / predictions_file)
