"""Generic dataclass <-> JSON-ready dict conversion driven by type hints.

Records stay plain dataclasses; this module is the only place that knows how
to turn nested dicts back into them, so every record round-trips the same way.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from workbench.errors import ResultsError

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Dataclass (or nested containers of them) to JSON-ready data; NaN/inf become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return to_dict(obj.item())
    return obj


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build ``cls`` from ``data``; a missing or mistyped field raises ResultsError naming it."""
    return typing.cast(T, _convert(cls, data, path or cls.__name__))


def _convert(tp: Any, data: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if data is None:
            if type(None) in args:
                return None
            raise ResultsError(f"{path} is null but must be set; the record is incomplete")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, data, path)
            except ResultsError as exc:
                errors.append(str(exc))
        raise ResultsError(errors[0] if errors else f"{path}: cannot read {data!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ResultsError(f"{path} should be an object, got {type(data).__name__}")
        hints = get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResultsError(
                    f"{path}.{f.name} is missing; the record was written by another "
                    "workbench version or is corrupt: re-run the stage that wrote it"
                )
        return tp(**kwargs)  # type: ignore[operator]
    if origin in (list, tuple):
        if not isinstance(data, list | tuple):
            raise ResultsError(f"{path} should be a list, got {type(data).__name__}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            pairs = enumerate(zip(args, data, strict=False))
            return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in pairs)
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise ResultsError(f"{path} should be an object, got {type(data).__name__}")
        _, vt = get_args(tp) or (Any, Any)
        return {k: _convert(vt, v, f"{path}.{k}") for k, v in data.items()}
    if tp is float:
        if data is None:
            return math.nan
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise ResultsError(f"{path} should be a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ResultsError(f"{path} should be an integer, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise ResultsError(f"{path} should be a string, got {data!r}")
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise ResultsError(f"{path} should be true/false, got {data!r}")
        return data
    return data
