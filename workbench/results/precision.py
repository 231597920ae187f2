"""Precisions as data: what each ``precision = "..."`` of a build means, in one registry.

A record's ``precision`` field names one of these descriptors; the engine, the sweep, the
notes and the report ask the descriptor (is it INT8? does it need a calibration table?)
instead of testing the name. A new precision is one ``register_precision`` call plus a
backend whose capabilities list it (see docs/architecture.md, "Adding a precision").

Example::

    precision("int8-static").calibrated  # True: the engine prepares a calibration table
    precision("fp16").int8  # False
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from workbench.errors import ConfigError

DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
RANGES = ("", "static", "dynamic")
TABLES = ("", "int8", "fp8")


@dataclass(frozen=True)
class Precision:
    """One precision a build can ask for."""

    name: str  # as written in [[build]] precision and in every record
    dtype: str  # number format the quantized (or cast) matmuls run in: one of DTYPES
    ranges: str = ""  # activation ranges: "" (float), "static" (fixed at build), "dynamic"
    calibrated: bool = False  # the engine prepares a calibration set and table before building
    table: str = ""  # the table a calibrated build reads: "int8" | "fp8" ("" when none)
    summary: str = ""  # one line for error messages and docs

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES or self.ranges not in RANGES or self.table not in TABLES:
            raise ConfigError(
                f"precision {self.name!r}: dtype in {DTYPES}, ranges in {RANGES}, table in {TABLES}"
            )
        if self.table and not self.calibrated:
            raise ConfigError(f"precision {self.name!r} reads a table: set calibrated=True")

    @property
    def int8(self) -> bool:
        """Its matmuls run in INT8 (what the INT8 notes, audit and report talk about)."""
        return self.dtype == "int8"


def _float(name: str, summary: str) -> Precision:
    return Precision(name, name, summary=summary)


_PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        _float("fp32", "FP32, the model as trained"),
        Precision("tf32", "tf32", summary="FP32 with TF32 tensor-core matmuls (CUDA)"),
        _float("fp16", "weights and activations cast to FP16"),
        _float("bf16", "weights and activations cast to BF16"),
        Precision("fp8", "fp8", "static", True, "fp8", "FP8 e4m3 matmuls, scales from the table"),
        Precision("int8-static", "int8", "static", True, "int8", "INT8, ranges from the table"),
        # ORT ignores the table; PyTorch's per-token INT8 Linears are built from it
        Precision("int8-dynamic", "int8", "dynamic", True, "int8", "INT8, ranges per batch"),
        Precision("int8-implicit", "int8", "static", True, "int8", "INT8, TensorRT calibrates"),
        Precision("int8-explicit", "int8", "static", True, "int8", "INT8 from the Q/DQ model"),
    )
}


def precision(name: str) -> Precision:
    """The descriptor called ``name``; ConfigError (with a did-you-mean) when none is."""
    if name not in _PRECISIONS:
        close = difflib.get_close_matches(name, list(_PRECISIONS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"precision {name!r} is unknown; {hint}use one of {', '.join(_PRECISIONS)}"
        )
    return _PRECISIONS[name]


def find_precision(name: str) -> Precision | None:
    """The descriptor called ``name``, or None (a record written with a precision that is
    not registered in this process)."""
    return _PRECISIONS.get(name)


def precision_names() -> tuple[str, ...]:
    """Every registered precision, in registration order."""
    return tuple(_PRECISIONS)


def register_precision(p: Precision) -> None:
    """Make ``p`` known to the spec, the engine and the report; ConfigError on a clash."""
    if p.name in _PRECISIONS and _PRECISIONS[p.name] != p:
        raise ConfigError(f"precision {p.name!r} is already registered differently")
    _PRECISIONS[p.name] = p


def unregister_precision(name: str) -> None:
    """Forget the precision ``name`` (a plugin unloading, a test cleaning up)."""
    _PRECISIONS.pop(name, None)
