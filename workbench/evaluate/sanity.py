"""Sanity of the model and the data: is there anything worth quantizing and gating here?

A model that predicts one class for nearly every row, or is no better than always guessing
the majority class, "passes" any accuracy-drop gate, as does a tokenizer that turns every
text into special tokens only. These pure checks say so in words; the run stores them as
``RunResult.sanity_warnings`` and the terminal, the report and the gate show them.

Example::

    warnings = prediction_warnings(ref_preds, labels, n_classes=2, build="ort-fp32")
    warnings += token_warnings(content_lengths, lengths, max_length=128)
"""

from __future__ import annotations

import numpy as np

CONSTANT_SHARE = 0.95  # one class predicted for at least this share of rows
MIN_MEDIAN_CONTENT_TOKENS = 2  # median non-special tokens per text below this: no signal
TRUNCATED_SHARE = 0.9  # more rows than this cut at max_length: the model sees a prefix only


def prediction_warnings(
    preds: np.ndarray, labels: np.ndarray, n_classes: int, build: str
) -> list[str]:
    """Warnings about the reference build's predictions ``preds`` against true ``labels``
    (both model output indices): near-constant output, or accuracy at chance (majority)."""
    preds = np.asarray(preds, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(preds) == 0:
        return []
    out = []
    counts = np.bincount(preds, minlength=n_classes)
    top = int(counts.argmax())
    share = counts[top] / len(preds)
    if share >= CONSTANT_SHARE:
        out.append(
            f"degenerate model: {build} predicts class {top} for {share:.0%} of "
            f"{len(preds)} test rows; the gate's verdict says little about quantization here"
        )
    accuracy = float(np.mean(preds == labels))
    true_counts = np.bincount(labels, minlength=n_classes)
    majority = true_counts.max() / len(labels)
    if accuracy <= majority:
        out.append(
            f"degenerate model: {build} accuracy {accuracy:.1%} is not above the majority-class "
            f"rate {majority:.1%} (always guessing class {int(true_counts.argmax())}); check the "
            "model, its labels and the data"
        )
    return out


def token_warnings(content_lengths: np.ndarray, lengths: np.ndarray, max_length: int) -> list[str]:
    """Warnings about the tokenized test texts: ``content_lengths`` are the non-special tokens
    per text, ``lengths`` all tokens (untruncated); mostly special tokens, or mostly cut."""
    content = np.asarray(content_lengths, dtype=np.int64)
    total = np.asarray(lengths, dtype=np.int64)
    if len(content) == 0:
        return []
    out = []
    median = float(np.median(content))
    if median < MIN_MEDIAN_CONTENT_TOKENS:
        out.append(
            f"degenerate tokenization: the median test text has {median:g} non-special tokens "
            f"(of {float(np.median(total)):g}); the tokenizer does not fit this data or model "
            "(wrong tokenizer.json, or an empty vocabulary)"
        )
    truncated = float(np.mean(total > max_length))
    if truncated > TRUNCATED_SHARE:
        out.append(
            f"degenerate tokenization: {truncated:.0%} of test texts are cut at max_length = "
            f"{max_length}; the model sees only their first tokens (raise [data] max_length)"
        )
    return out
