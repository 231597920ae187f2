"""Match a dataset's label values to a model's outputs (by name; integers by index where safe).

A wrong mapping silently turns a good model into a bad one, so anything ambiguous
is an error that lists both sides instead of a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from workbench.errors import DataError

_DEFAULT_NAME = re.compile(r"^label_(\d+)$")
_INT = re.compile(r"^[+-]?\d+$")


def _norm(label: str) -> str:
    return str(label).strip().casefold()


def match_labels(
    model_labels: Sequence[str], data_labels: Sequence[str], where: str = ""
) -> list[int]:
    """``perm[i]`` = model output index of data label ``i``; DataError naming both sides if none.

    Example::

        match_labels(["NEGATIVE", "POSITIVE"], ["positive", "negative"])  # -> [1, 0]
        match_labels(["LABEL_0", "LABEL_1"], ["0", "1"])  # -> [0, 1]
    """
    prefix = f"{where}: " if where else ""
    if not model_labels or not data_labels:
        raise DataError(
            f"{prefix}no labels to match (model {list(model_labels)}, data {list(data_labels)}); "
            "the data needs a label column with values and the model at least one output"
        )
    model = [_norm(m) for m in model_labels]
    data = [_norm(d) for d in data_labels]
    _no_duplicates(data, "data", prefix)
    perm = _by_name(model, data)
    if perm is None and all(_INT.match(d) for d in data):
        defaults = [_DEFAULT_NAME.match(m) for m in model]
        if all(defaults):
            perm = _by_index(data, [int(m.group(1)) for m in defaults if m])
        elif all(_INT.match(m) for m in model):
            perm = _by_index(data, list(range(len(model))))
    if perm is None:
        missing = [d for d, n in zip(data_labels, data, strict=True) if model.count(n) != 1]
        raise DataError(
            f"{prefix}the data's labels {list(data_labels)} do not match the model's outputs "
            f"{list(model_labels)} (config id2label; no single output for {missing}); rename the "
            "data's labels to the model's names (case does not matter), or use integers 0..n-1 "
            "with a model whose labels are LABEL_0.. or integers"
        )
    return perm


def _no_duplicates(labels: list[str], side: str, prefix: str) -> None:
    seen = {x for x in labels if labels.count(x) > 1}
    if seen:
        raise DataError(
            f"{prefix}{side} labels {sorted(seen)} appear more than once when case and spaces "
            "are ignored; give every class one distinct name"
        )


def _by_name(model: list[str], data: list[str]) -> list[int] | None:
    """Exact (normalized) name match; None unless every data label names exactly one output."""
    perm = []
    for d in data:
        hits = [j for j, m in enumerate(model) if m == d]
        if len(hits) != 1:
            return None
        perm.append(hits[0])
    return perm


def _by_index(data: list[str], model_index: list[int]) -> list[int] | None:
    """Data value k -> the output whose index is k; None when k is not an output."""
    where = {k: j for j, k in enumerate(model_index)}
    perm = [where.get(int(d)) for d in data]
    if any(p is None for p in perm):
        return None
    return [int(p) for p in perm if p is not None]
