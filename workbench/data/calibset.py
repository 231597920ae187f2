"""Calibration sets as versioned artifacts: ``<root>/<name>/data.parquet`` + ``manifest.json``.

A set is sampled from a pool (stratified by label and token length by default), saved with a
manifest that pins its source, tokenizer and sampling arguments, and reused when the same
arguments are asked for again. Example::

    cs = build_calibration_set(splits.calibration_pool, 512, tok, source_sha256=data.source_sha256)
    for feed in cs.batches(tok, batch_size=16):
        ...  # input_ids / attention_mask / token_type_ids, padded to the batch's longest row
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.data.representativeness import TextProfile, assess
from workbench.data.sampling import check_strategy, dedupe_mask, sample_indices
from workbench.data.shapes import batch_plan, length_histogram, length_stats, suggest_profile
from workbench.data.tokenize import Feed, TextTokenizer
from workbench.errors import DataError, ResultsError
from workbench.fileio import (
    atomic_write_json,
    atomic_write_with,
    check_name,
    sha256_file,
    sha256_json,
    sha256_strings,
)
from workbench.results.representativeness import RepresentativenessReport
from workbench.results.serde import from_dict, to_dict

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
DATA_FILE = "data.parquet"
DEFAULT_ROOT = "calibration_sets"


@dataclass(frozen=True)
class PoolFilters:
    """Filters applied to the pool before sampling (recorded in the manifest)."""

    dedupe: bool = True  # drop exact and near-exact duplicates (case/space/punctuation)
    min_tokens: int | None = None  # keep rows with at least this many tokens
    max_tokens: int | None = None  # keep rows with at most this many tokens


@dataclass(frozen=True)
class CalibrationManifest:
    """Everything that identifies a calibration set; ``manifest.json`` holds it."""

    schema_version: int
    name: str
    key: str  # content key over the arguments + source/pool hashes; a mismatch means rebuild
    created_utc: str
    source_path: str
    source_sha256: str
    pool_sha256: str  # texts + labels of the pool the set was drawn from
    pool_size: int
    filters: dict[str, Any]  # PoolFilters fields + rows dropped by each
    strategy: str
    seed: int
    n: int
    tokenizer_name: str
    tokenizer_vocab_sha256: str
    max_length: int
    label_names: list[str]
    label_histogram: dict[str, int]
    length_histogram: dict[str, int]  # token-length bucket -> count (untruncated lengths)
    length_stats: dict[str, float]
    profile_suggestion: dict[str, Any]  # TensorRT min/opt/max from the set's lengths
    notes: list[str]
    data_file: str
    data_sha256: str
    target_key: str  # hash of the target the report was computed against ("" when none)
    representativeness: RepresentativenessReport | None


@dataclass(frozen=True)
class CalibrationSet:
    """A loaded calibration set: rows, manifest, token lengths and a batch reader."""

    dir: Path
    dataset: Dataset  # columns: text (str), label (int; -1 when unlabelled)
    manifest: CalibrationManifest
    manifest_sha256: str
    lengths: np.ndarray  # untruncated token lengths with the manifest's tokenizer

    @property
    def name(self) -> str:
        return self.manifest.name

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, tokenizer: TextTokenizer, batch_size: int = 16) -> Iterator[Feed]:
        """Tokenizer feeds grouped by length bucket, each sample exactly once, fresh arrays.

        Each batch is padded only to its longest row (never past its bucket's upper edge).
        """
        check_tokenizer(self.manifest, tokenizer, self.dir)
        texts = self.dataset["text"]
        pairs = self.dataset["text_pair"] if "text_pair" in self.dataset.column_names else None
        for idx in batch_plan(self.lengths, tokenizer.max_length, batch_size):
            second = None if pairs is None else [pairs[int(i)] for i in idx]
            yield tokenizer.encode([texts[int(i)] for i in idx], pairs=second)


def check_tokenizer(manifest: CalibrationManifest, tokenizer: TextTokenizer, where: Path) -> None:
    """DataError when ``tokenizer`` is not the one the set was built with."""
    if tokenizer.vocab_sha256 != manifest.tokenizer_vocab_sha256:
        raise DataError(
            f"calibration set {where} was built with tokenizer {manifest.tokenizer_name} "
            f"(vocab {manifest.tokenizer_vocab_sha256[:12]}) but this model's tokenizer is "
            f"{tokenizer.name} (vocab {tokenizer.vocab_sha256[:12]}); rebuild the set with "
            "`workbench calibset` for this model"
        )


def _label_info(pool: Dataset) -> tuple[np.ndarray | None, list[str]]:
    if "label" not in pool.column_names:
        return None, []
    labels = np.asarray(pool["label"], dtype=np.int64)
    feature = pool.features["label"]
    names = list(getattr(feature, "names", None) or [])
    if (labels < 0).all():
        return None, names
    if not names:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    return labels, names


def default_name(
    source_path: str, strategy: str, n: int, seed: int, filters: PoolFilters = PoolFilters()
) -> str:
    """A readable set name from the arguments, e.g. ``rotten_tomatoes-stratified-n512-s0``."""
    base = Path(source_path).name.split(".")[0] if source_path else "pool"
    if base == "rotten_tomatoes_corpus_full":
        base = "rotten_tomatoes"
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-") or "pool"
    name = f"{base}-{strategy}-n{n}-s{seed}"
    if filters.min_tokens is not None or filters.max_tokens is not None:
        name += f"-len{filters.min_tokens or 0}-{filters.max_tokens or 'max'}"
    return name


def _pool_sha256(texts: list[str], labels: np.ndarray | None) -> str:
    ys = labels.tolist() if labels is not None else [-1] * len(texts)
    return sha256_strings(f"{t}\t{y}" for t, y in zip(texts, ys, strict=True))


def build_calibration_set(
    pool: Dataset,
    n: int,
    tokenizer: TextTokenizer,
    strategy: str = "stratified",
    seed: int = 0,
    root: str | Path = DEFAULT_ROOT,
    name: str | None = None,
    source_path: str = "",
    source_sha256: str = "",
    target_lengths: np.ndarray | None = None,
    *,
    target: TextProfile | None = None,
    target_name: str = "",
    filters: PoolFilters = PoolFilters(),
) -> CalibrationSet:
    """Sample ``n`` rows of ``pool`` into ``<root>/<name>/``, or reuse an identical saved set.

    ``target`` (texts' profile, optionally labels) or ``target_lengths`` drives the 'matched'
    strategy and the representativeness numbers saved in the manifest. Example::

        cs = build_calibration_set(splits.calibration_pool, 512, tok, source_path=data.source_path,
                                   source_sha256=data.source_sha256)
    """
    check_strategy(strategy)
    if "text" not in pool.column_names:
        raise DataError(f"the pool has no 'text' column (columns: {pool.column_names})")
    if len(pool) == 0:
        raise DataError("the calibration pool is empty; nothing to sample from")
    if n < 1:
        raise DataError(f"N must be at least 1, got {n}")
    if target is None and target_lengths is not None:
        target = TextProfile(np.asarray(target_lengths, dtype=np.int64))
    texts, pairs, joined = _pool_texts(pool)
    labels, label_names = _label_info(pool)
    name = name or default_name(source_path, strategy, n, seed, filters)
    check_name(name, "calibration set name")
    out = Path(root) / name
    pool_sha = _pool_sha256(joined, labels)
    key = sha256_json(
        {
            "schema": MANIFEST_SCHEMA_VERSION,
            "source_sha256": source_sha256,
            "pool_sha256": pool_sha,
            "n": n,
            "strategy": strategy,
            "seed": seed,
            "vocab": tokenizer.vocab_sha256,
            "max_length": tokenizer.max_length,
            "filters": to_dict(filters),
            "target": _target_key(target) if strategy == "matched" else None,
        }
    )
    reused = _try_reuse(out, key, tokenizer)
    if reused is not None:
        log.info("reusing calibration set %s (same arguments and source)", out)
        if target is None or reused.manifest.target_key == _target_key(target):
            return reused
        return _reassess(reused, tokenizer, target, target_name or "target lengths")
    lengths = tokenizer.lengths(texts, pairs=pairs)
    keep, filter_record = _apply_filters(joined, lengths, filters)
    usable = np.flatnonzero(keep)
    if len(usable) == 0:
        raise DataError(f"no pool rows are left after the filters ({filter_record}); relax them")
    if n > len(usable):
        raise DataError(
            f"N={n} is larger than the pool: only {len(usable)} examples are available "
            f"(pool {len(pool)}, after dedupe/filters); lower N"
        )
    local, notes = sample_indices(
        strategy,
        n,
        lengths[usable],
        None if labels is None else labels[usable],
        tokenizer.max_length,
        seed=seed,
        target_lengths=None if target is None else target.lengths,
        target_labels=None if target is None else target.labels,
    )
    chosen = usable[local]
    for note in notes:
        log.warning("%s: %s", name, note)
    return _write_set(
        out,
        texts=[texts[int(i)] for i in chosen],
        pairs=None if pairs is None else [pairs[int(i)] for i in chosen],
        labels=None if labels is None else labels[chosen],
        lengths=lengths[chosen],
        pool_index=chosen,
        tokenizer=tokenizer,
        manifest_fields={
            "name": name,
            "key": key,
            "source_path": source_path,
            "source_sha256": source_sha256,
            "pool_sha256": pool_sha,
            "pool_size": len(pool),
            "filters": filter_record,
            "strategy": strategy,
            "seed": seed,
            "n": n,
            "label_names": label_names,
            "notes": notes,
        },
        target=target,
        target_name=target_name or ("target lengths" if target is not None else ""),
    )


def usable_pool_size(pool: Dataset) -> int:
    """Rows a calibration set can draw from with the default filters (empty rows and exact /
    near-exact duplicates dropped): what N must not exceed. Cheap: no tokenization.

    Example::

        n = min(512, usable_pool_size(ws.pool))
    """
    if "text" not in pool.column_names or len(pool) == 0:
        return 0
    _, _, joined = _pool_texts(pool)
    keep, _ = _apply_filters(joined, np.zeros(len(joined), dtype=np.int64), PoolFilters())
    return int(keep.sum())


def _pool_texts(pool: Dataset) -> tuple[list[str], list[str] | None, list[str]]:
    """Texts, pairs (or None) and the ``text\tpair`` strings deduplication compares."""
    texts = [str(t) for t in pool["text"]]
    pairs = [str(t) for t in pool["text_pair"]] if "text_pair" in pool.column_names else None
    joined = texts if pairs is None else [f"{a}\t{b}" for a, b in zip(texts, pairs, strict=True)]
    return texts, pairs, joined


def _target_key(target: TextProfile | None) -> str | None:
    if target is None:
        return None
    labels = None if target.labels is None else target.labels.tolist()
    ids = None
    if target.token_ids is not None:
        ids = sha256_strings(" ".join(map(str, row)) for row in target.token_ids)
    return sha256_json(
        {"lengths": np.asarray(target.lengths).tolist(), "labels": labels, "token_ids": ids}
    )


def _apply_filters(
    texts: list[str], lengths: np.ndarray, filters: PoolFilters
) -> tuple[np.ndarray, dict[str, Any]]:
    keep = np.array([bool(t.strip()) for t in texts], dtype=bool)
    record: dict[str, Any] = {**to_dict(filters), "dropped_empty": int((~keep).sum())}
    if filters.dedupe:
        dup = ~dedupe_mask(texts) & keep
        keep &= ~dup
        record["dropped_duplicates"] = int(dup.sum())
    in_range = np.ones(len(texts), dtype=bool)
    if filters.min_tokens is not None:
        in_range &= lengths >= filters.min_tokens
    if filters.max_tokens is not None:
        in_range &= lengths <= filters.max_tokens
    record["dropped_by_length"] = int((keep & ~in_range).sum())
    keep &= in_range
    record["usable"] = int(keep.sum())
    return keep, record


def _write_set(
    out: Path,
    texts: list[str],
    pairs: list[str] | None,
    labels: np.ndarray | None,
    lengths: np.ndarray,
    pool_index: np.ndarray,
    tokenizer: TextTokenizer,
    manifest_fields: dict[str, Any],
    target: TextProfile | None,
    target_name: str,
) -> CalibrationSet:
    label_arr = labels if labels is not None else np.full(len(texts), -1, dtype=np.int64)
    df = pd.DataFrame(
        {"text": texts, "label": label_arr, "length": lengths, "pool_index": pool_index}
    )
    if pairs is not None:
        df.insert(1, "text_pair", pairs)
    data_path = out / DATA_FILE
    atomic_write_with(data_path, lambda tmp: df.to_parquet(tmp, index=False))
    names: list[str] = manifest_fields["label_names"]
    hist = {
        (names[y] if 0 <= y < len(names) else str(y)): int(c)
        for y, c in zip(*np.unique(label_arr, return_counts=True), strict=True)
    }
    report = None
    if target is not None:
        report = _assess(
            out, manifest_fields["name"], texts, labels, names, tokenizer, target, target_name
        )
    manifest = CalibrationManifest(
        schema_version=MANIFEST_SCHEMA_VERSION,
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        tokenizer_name=tokenizer.name,
        tokenizer_vocab_sha256=tokenizer.vocab_sha256,
        max_length=tokenizer.max_length,
        label_histogram=hist,
        length_histogram=length_histogram(lengths, tokenizer.max_length),
        length_stats=length_stats(lengths, tokenizer.max_length),
        profile_suggestion=suggest_profile(lengths, tokenizer.max_length),
        data_file=DATA_FILE,
        data_sha256=sha256_file(data_path),
        representativeness=report,
        target_key=_target_key(target) or "",
        **manifest_fields,
    )
    atomic_write_json(out / MANIFEST_FILE, to_dict(manifest))
    log.info("wrote calibration set %s (%d samples)", out, len(texts))
    return load_calibration_set(out, tokenizer)


def _assess(
    out: Path,
    name: str,
    texts: list[str],
    labels: np.ndarray | None,
    label_names: list[str],
    tokenizer: TextTokenizer,
    target: TextProfile,
    target_name: str,
) -> RepresentativenessReport:
    report = assess(
        TextProfile.from_texts(texts, tokenizer, labels),
        target,
        tokenizer.max_length,
        unk_id=tokenizer.unk_id,
        label_names=label_names,
        target_name=target_name,
        calibration_set=str(out),
    )
    if report.warnings:
        log.warning(
            "%s is %s vs %s: %s", name, report.verdict, target_name, "; ".join(report.warnings)
        )
    return report


def _reassess(
    cs: CalibrationSet, tokenizer: TextTokenizer, target: TextProfile, target_name: str
) -> CalibrationSet:
    """Same rows, new target: recompute the report and rewrite only the manifest."""
    m = cs.manifest
    labels = np.asarray(cs.dataset["label"], dtype=np.int64)
    report = _assess(
        cs.dir,
        m.name,
        cs.dataset["text"],
        None if (labels < 0).any() else labels,
        m.label_names,
        tokenizer,
        target,
        target_name,
    )
    manifest = replace(m, representativeness=report, target_key=_target_key(target) or "")
    atomic_write_json(cs.dir / MANIFEST_FILE, to_dict(manifest))
    return load_calibration_set(cs.dir, tokenizer)


def _try_reuse(out: Path, key: str, tokenizer: TextTokenizer) -> CalibrationSet | None:
    if not (out / MANIFEST_FILE).is_file():
        return None
    try:
        cs = load_calibration_set(out, tokenizer)
    except DataError as exc:
        log.info("rebuilding %s: %s", out, exc)
        return None
    if cs.manifest.key != key:
        log.info("rebuilding %s: its source or arguments changed", out)
        return None
    return cs


def _read_manifest(path: Path) -> CalibrationManifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); rebuild with `workbench calibset`") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != MANIFEST_SCHEMA_VERSION:
        raise DataError(
            f"{path} has schema_version {version}, this workbench reads "
            f"{MANIFEST_SCHEMA_VERSION}; rebuild with `workbench calibset`"
        )
    try:
        return from_dict(CalibrationManifest, data)
    except ResultsError as exc:
        raise DataError(f"{path}: {exc}") from exc


def load_calibration_set(
    path: str | Path, tokenizer: TextTokenizer | None = None
) -> CalibrationSet:
    """Load a saved set (its directory or its ``manifest.json``), checking data and tokenizer.

    Example::

        cs = load_calibration_set("calibration_sets/rotten_tomatoes-stratified-n512-s0", tok)
    """
    from datasets import ClassLabel, Dataset, Features, Value

    p = Path(path)
    d = p.parent if p.name == MANIFEST_FILE else p
    if not (d / MANIFEST_FILE).is_file():
        raise DataError(
            f"no calibration set at {d} ({MANIFEST_FILE} missing); build one with "
            "`workbench calibset`"
        )
    manifest_path = d / MANIFEST_FILE
    manifest = _read_manifest(manifest_path)
    data_path = d / manifest.data_file
    if not data_path.is_file() or sha256_file(data_path) != manifest.data_sha256:
        raise DataError(
            f"{data_path} is missing or does not match its manifest (sha256); rebuild the set"
        )
    if tokenizer is not None:
        check_tokenizer(manifest, tokenizer, d)
    df = pd.read_parquet(data_path)
    labelled = bool(manifest.label_names) and bool((df["label"] >= 0).all())
    label_feature = ClassLabel(names=manifest.label_names) if labelled else Value("int64")
    cols = {"text": Value("string")}
    if "text_pair" in df.columns:
        cols["text_pair"] = Value("string")
    feats = Features({**cols, "label": label_feature})
    ds = Dataset.from_pandas(df[[*cols, "label"]], features=feats, preserve_index=False)
    return CalibrationSet(
        dir=d,
        dataset=ds,
        manifest=manifest,
        manifest_sha256=sha256_file(manifest_path),
        lengths=df["length"].to_numpy(dtype=np.int64),
    )


def with_report(cs: CalibrationSet, report: RepresentativenessReport) -> RepresentativenessReport:
    """The report stamped with the set's directory and manifest hash (for a run directory)."""
    return replace(report, calibration_set=str(cs.dir), manifest_sha256=cs.manifest_sha256)
