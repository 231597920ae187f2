"""Unlabelled production text ("traffic") and the labels a person writes into disagreements.csv.

Traffic is text only: the same text column as the labelled data, in any format the labelled
files use (CSV/TSV/JSONL/Parquet or a saved datasets folder). Two builds that agree on a row
have the same accuracy on it, so traffic bounds an accuracy change without a single label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.data.datasets import read_table, source_sha256
from workbench.errors import DataError

DISAGREEMENT_COLUMNS = ("text", "label")


@dataclass(frozen=True)
class Traffic:
    """Deduplicated unlabelled texts, in file order, with their source's identity."""

    source_path: str
    source_sha256: str
    texts: list[str]


def load_traffic(path: str | Path, text_column: str = "text") -> Traffic:
    """Read the non-empty, distinct texts of ``text_column`` from an unlabelled file.

    Example::

        traffic = load_traffic("traffic.csv", "sentence")
    """
    p = Path(path)
    df = read_table(p).frame
    if text_column not in df.columns:
        raise DataError(
            f"[data] unlabeled file {p} has no column {text_column!r} (columns: "
            f"{list(df.columns)}); it needs the same text column as the labelled data"
        )
    texts = df[text_column].dropna().astype(str).str.strip()
    texts = texts[texts.str.len() > 0].drop_duplicates()
    if texts.empty:
        raise DataError(f"[data] unlabeled file {p} has no non-empty text in {text_column!r}")
    return Traffic(str(p), source_sha256(p), list(texts))


def read_disagreement_labels(path: str | Path, label_names: Sequence[str]) -> dict[str, str]:
    """text -> label name from a filled-in disagreements.csv; one-line DataError on a bad file.

    Every row needs a label, and every label must be one of ``label_names`` (names, not ids).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"disagreement labels file {p} does not exist; pass the filled-in CSV")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{p} could not be read as CSV ({exc}); pass disagreements.csv") from exc
    missing = [c for c in DISAGREEMENT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{p} has no column(s) {missing} (columns: {list(df.columns)}); pass the "
            "disagreements.csv a run wrote, with its label column filled in"
        )
    labels = df["label"].str.strip()
    empty = int((labels == "").sum())
    if empty:
        raise DataError(
            f"{p}: {empty} of {len(df)} rows have an empty label; fill in every label "
            f"(one of {', '.join(label_names)})"
        )
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
        raise DataError(
            f"{p}: unknown label(s) {unknown[:5]}; use the label names "
            f"{', '.join(label_names)} (names, not ids)"
        )
    out: dict[str, str] = {}
    for text, label in zip(df["text"].str.strip(), labels, strict=True):
        if out.setdefault(text, label) != label:
            raise DataError(f"{p}: the text {text[:60]!r} has two different labels; keep one")
    return out


def check_labelled_texts(labels: dict[str, str], expected: Sequence[str], where: str) -> None:
    """The filled-in file must hold exactly the run's disagreeing texts (one-line DataError)."""
    want, got = set(expected), set(labels)
    if want == got:
        return
    extra, lacking = sorted(got - want), sorted(want - got)
    parts = []
    if lacking:
        parts.append(f"{len(lacking)} disagreeing text(s) missing (first: {lacking[0][:60]!r})")
    if extra:
        parts.append(f"{len(extra)} text(s) that are not disagreements (first: {extra[0][:60]!r})")
    raise DataError(
        f"{where} does not match this run's disagreements ({'; '.join(parts)}); label the "
        "disagreements.csv this run wrote"
    )
