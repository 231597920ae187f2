"""Where calibration pools and target samples come from.

Pools: local CSV/TSV/JSONL/Parquet/Arrow/TXT files or a saved ``Dataset`` directory (all read by
``data.datasets.read_table``), a pandas DataFrame, a list of strings, or a Dataset.
Targets: a "traffic sample" of raw production texts (``.txt`` one per line, or CSV/JSONL/Parquet
with a text column), labels optional. Everything comes back with a content hash for manifests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import DataError
from workbench.fileio import sha256_file, sha256_strings

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset

    from workbench.data.representativeness import TextProfile
    from workbench.data.tokenize import TextTokenizer


@dataclass(frozen=True)
class Pool:
    """Texts (and labels when known) to sample a calibration set from, with their identity."""

    name: str
    source_path: str
    source_sha256: str
    dataset: Dataset  # text (str), label (ClassLabel / int; -1 = unknown) when labelled
    label_names: list[str]

    @property
    def labelled(self) -> bool:
        return "label" in self.dataset.column_names

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass(frozen=True)
class TrafficSample:
    """A target sample: raw texts the model will meet (labels when the file has them)."""

    path: str
    sha256: str
    texts: list[str]
    labels: np.ndarray | None
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def _dir_sha256(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return sha256_strings(f"{p.relative_to(path)}:{sha256_file(p)}" for p in files)


def _normalise(
    ds: Dataset,
    text_column: str,
    label_column: str | None,
    where: str,
    class_names: dict[str, list[str]] | None = None,
) -> tuple[Dataset, list[str]]:
    """Keep text (+label) columns renamed to text/label; drop rows without text. A label column
    in ``class_names`` (a saved dataset's ClassLabel, read as names) keeps its label order."""
    from datasets import ClassLabel

    cols = ds.column_names
    if text_column not in cols:
        raise DataError(f"{where} has no column {text_column!r} (columns: {cols}); --text-column")
    use_label = label_column is not None and label_column in cols
    if label_column is not None and not use_label and label_column != "label":
        raise DataError(f"{where} has no column {label_column!r} (columns: {cols}); --label-column")
    keep = [text_column] + ([label_column] if use_label and label_column else [])
    ds = ds.select_columns(keep)
    if text_column != "text":
        ds = ds.rename_column(text_column, "text")
    if use_label and label_column != "label":
        ds = ds.rename_column(str(label_column), "label")
    ds = ds.filter(
        lambda r: r["text"] is not None and bool(str(r["text"]).strip()), keep_in_memory=True
    )
    if len(ds) == 0:
        raise DataError(f"{where} has no non-empty texts in column {text_column!r}")
    if not use_label:
        return ds, []
    feature = ds.features["label"]
    if isinstance(feature, ClassLabel):
        return ds, list(feature.names)
    ds = ds.filter(lambda r: r["label"] is not None, keep_in_memory=True)
    values = ds["label"]
    known = (class_names or {}).get(str(label_column))
    if known is not None:
        return _as_classes(ds, known), known
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        names = [str(i) for i in range(int(max(values)) + 1)]
        return ds.cast_column("label", ClassLabel(names=names)), names
    names = sorted({str(v) for v in values})
    return _as_classes(ds, names), names


def _as_classes(ds: Dataset, names: list[str]) -> Dataset:
    """Label values (names) as the ids of ``names``, typed ClassLabel."""
    from datasets import ClassLabel

    index = {n: i for i, n in enumerate(names)}
    ds = ds.map(lambda r: {"label": index[str(r["label"])]}, keep_in_memory=True)
    return ds.cast_column("label", ClassLabel(names=names))


def load_pool(
    source: str | Path | pd.DataFrame | Sequence[str] | Dataset,
    text_column: str = "text",
    label_column: str | None = "label",
) -> Pool:
    """A calibration pool from a file, a Dataset dir, a DataFrame, a list of strings or a Dataset.

    Labels are used when ``label_column`` exists (pass None for an unlabelled pool); string labels
    become a ClassLabel with sorted names. Example::

        pool = load_pool("reviews.jsonl", text_column="body", label_column="stars")
    """
    import pandas as pd
    from datasets import Dataset

    from workbench.data.datasets import read_table

    classes: dict[str, list[str]] = {}
    if isinstance(source, Dataset):
        ds, name, path, sha = source, "dataset", "", ""
    elif isinstance(source, pd.DataFrame):
        ds = Dataset.from_pandas(source.reset_index(drop=True), preserve_index=False)
        name, path, sha = "dataframe", "", ""
    elif isinstance(source, str | Path):
        p = Path(source)
        if not p.exists():
            raise DataError(f"{p} does not exist; pass an existing data file or Dataset directory")
        table = read_table(p, pick_split=True)
        if len(table.frame) == 0:
            raise DataError(f"{p} has no rows; it needs at least one text")
        ds = Dataset.from_pandas(table.frame.reset_index(drop=True), preserve_index=False)
        classes = table.class_names
        name, path = p.name.split(".")[0] or "data", str(p)
        sha = _dir_sha256(p) if p.is_dir() else sha256_file(p)
    elif isinstance(source, Sequence):
        texts = [str(t) for t in source]
        if not texts:
            raise DataError("the list of texts is empty; a pool needs at least one text")
        ds, name, path, sha = Dataset.from_dict({"text": texts}), "texts", "", ""
        text_column, label_column = "text", None
    else:
        raise DataError(f"cannot make a pool from {type(source).__name__}; see load_pool's doc")
    ds, names = _normalise(ds, text_column, label_column, path or name, classes)
    if not sha:  # in-memory sources: hash the content
        labels = ds["label"] if "label" in ds.column_names else [-1] * len(ds)
        sha = sha256_strings(f"{t}\t{y}" for t, y in zip(ds["text"], labels, strict=True))
    return Pool(name=name, source_path=path, source_sha256=sha, dataset=ds, label_names=names)


def load_traffic(
    path: str | Path, text_column: str = "text", label_column: str | None = None
) -> TrafficSample:
    """A traffic sample file: ``.txt`` (one text per line) or CSV/JSONL/Parquet with a text column.

    Example: ``traffic = load_traffic("traffic.txt")``
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"target file {p} does not exist; pass a .txt/.csv/.jsonl traffic sample")
    if p.suffix.lower() == ".txt":
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"target file {p} is unreadable ({exc}); save it as UTF-8") from exc
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise DataError(f"target file {p} is empty; it needs one text per line")
        return TrafficSample(str(p), sha256_file(p), texts, None, [])
    pool = load_pool(p, text_column=text_column, label_column=label_column)
    labels = np.asarray(pool.dataset["label"], dtype=np.int64) if pool.labelled else None
    return TrafficSample(str(p), pool.source_sha256, pool.dataset["text"], labels, pool.label_names)


def default_pool(
    data_file: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    split_seed: int = 0,
    whole_file: bool = False,
) -> tuple[Pool, Dataset | None]:
    """The pool the CLI samples from, and the test split when there is one.

    No file: the shipped Rotten Tomatoes calibration pool (``make_splits(...).calibration_pool``,
    the same split the demo uses, so the set never overlaps the test split). A labelled file is
    split the same way unless ``whole_file``; an unlabelled file is the pool as a whole.
    """
    from workbench.data.datasets import (
        LabelledData,
        load_labelled_file,
        load_rotten_tomatoes,
        make_splits,
    )

    if data_file is None:
        data: LabelledData = load_rotten_tomatoes()
    else:
        pool = load_pool(data_file, text_column=text_column, label_column=label_column)
        if not pool.labelled or whole_file:
            return pool, None
        if Path(data_file).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".parquet"):
            data = load_labelled_file(data_file, text_column, label_column)  # as the demo does
        else:
            data = LabelledData(
                pool.name, pool.source_path, pool.source_sha256, pool.dataset, pool.label_names
            )
    splits = make_splits(data, seed=split_seed)
    pool = Pool(
        data.name, data.source_path, data.source_sha256, splits.calibration_pool, data.label_names
    )
    return pool, splits.test


def load_target(
    target: str,
    tokenizer: TextTokenizer,
    test: Dataset | None = None,
    label_names: Sequence[str] = (),
    text_column: str = "text",
    label_column: str | None = None,
) -> tuple[TextProfile, str]:
    """A target profile: ``"test"`` (the test split) or a traffic-sample file.

    Target labels are matched to ``label_names`` by name; unknown names are a DataError.
    """
    from workbench.data.representativeness import TextProfile

    if target in ("test", "test-split"):
        if test is None:
            raise DataError("--target test needs a labelled dataset with a test split")
        return TextProfile.from_texts(test["text"], tokenizer, test["label"]), "test split"
    traffic = load_traffic(target, text_column=text_column, label_column=label_column)
    labels = traffic.labels
    if labels is not None and label_names:
        unknown = sorted(set(traffic.label_names) - set(label_names))
        if unknown:
            raise DataError(
                f"{target}: labels {unknown} are not among the pool's {list(label_names)}; "
                "drop --target-label-column or rename them"
            )
        remap = np.array([list(label_names).index(n) for n in traffic.label_names])
        labels = remap[labels]
    return TextProfile.from_texts(traffic.texts, tokenizer, labels), traffic.path
