"""INT8 calibration strategies behind one interface, so explicit Q/DQ can replace implicit.

* ``ImplicitCalibration`` — TensorRT 10 only: ``IInt8EntropyCalibrator2`` fed fixed-shape
  batches (deprecated since 10.1, removed in 11).
* ``ExplicitQDQ`` — TensorRT 10 and 11: a Q/DQ ONNX model written from the workbench's
  ``CalibrationTable`` (or given ready-made); TensorRT builds it strongly typed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workbench.backends.tensorrt.buffers import MemoryApi
from workbench.backends.tensorrt.feeding import (
    CalibrationCacheIO,
    CalibrationFeeder,
    Feed,
    fixed_shape_batches,
)
from workbench.errors import ConfigError, ModelError
from workbench.fileio import sha256_file, sha256_json
from workbench.results.serde import to_dict


class Int8Strategy(Protocol):
    """What the builder needs from an INT8 strategy."""

    name: str

    def onnx_for_build(self, fp32_onnx: Path, work_dir: Path) -> Path: ...
    def content_sha256(self, build_onnx: Path) -> str: ...


def table_sha256(table: Any) -> str:
    """Hash of what a CalibrationTable contributes to a Q/DQ model: its ranges and method.

    Provenance such as ``created_utc`` is left out, so re-reading the same cache or table
    file reuses the Q/DQ model and the engine.
    """
    amax = getattr(table, "amax", None)
    if isinstance(amax, dict):
        return sha256_json({"amax": amax, "method": getattr(table, "method", "")})
    if is_dataclass(table) and not isinstance(table, type):
        return sha256_json(to_dict(table))
    return sha256_json(repr(table))


@dataclass(frozen=True)
class ExplicitQDQ:
    """INT8 from a Q/DQ model: written from ``table`` or given as ``qdq_onnx``.

    Example::

        ExplicitQDQ(table=read_trt_cache("calib.cache"))
    """

    table: Any = None
    qdq_onnx: Path | None = None
    per_channel: bool = False
    exclude: tuple[str, ...] = ()
    allow_partial: bool = False  # accept a TensorRT cache covering < 90 % of the activations
    name: str = field(default="explicit-qdq", init=False)

    def onnx_for_build(self, fp32_onnx: Path, work_dir: Path) -> Path:
        """The Q/DQ model to parse (written next to the engine cache when from a table)."""
        if self.qdq_onnx is not None:
            if not Path(self.qdq_onnx).is_file():
                raise ModelError(f"Q/DQ model {self.qdq_onnx} does not exist")
            return Path(self.qdq_onnx)
        if self.table is None:
            raise ConfigError(
                "int8-explicit needs a CalibrationTable (table=...) or a Q/DQ model (qdq_onnx=...)"
            )
        from workbench.calibration.qdq import write_qdq_model

        if getattr(self.table, "source", "") == "tensorrt-cache":
            from workbench.calibration.trt_cache import check_cache_coverage

            check_cache_coverage(self.table, fp32_onnx, "the calibration cache", self.allow_partial)
        key = sha256_json(
            {"t": table_sha256(self.table), "pc": self.per_channel, "x": self.exclude}
        )
        out = work_dir / f"model.qdq-{key[:12]}.onnx"
        if not out.is_file():
            write_qdq_model(
                fp32_onnx, self.table, out, per_channel=self.per_channel, exclude=self.exclude
            )
        return out

    def content_sha256(self, build_onnx: Path) -> str:
        """The Q/DQ model's bytes decide the engine: hash them."""
        return sha256_file(build_onnx)


@dataclass(frozen=True)
class ImplicitCalibration:
    """TensorRT 10 implicit INT8 over fixed (batch, seq) batches of tokenizer feeds.

    Example::

        ImplicitCalibration(list(cs.batches(tok, 16)), shape=(16, 64), cache_path=p)
    """

    feeds: Sequence[Feed]
    shape: tuple[int, int]
    cache_path: Path | None = None
    pad_id: int = 0
    seed_table: Any = None
    name: str = field(default="implicit-entropy2", init=False)

    def __post_init__(self) -> None:
        # A generator (e.g. CalibrationSet.batches) would be used up by the first pass.
        object.__setattr__(self, "feeds", tuple(self.feeds))

    def batches(self) -> list[Feed]:
        return fixed_shape_batches(self.feeds, self.shape[0], self.shape[1], pad_id=self.pad_id)

    def onnx_for_build(self, fp32_onnx: Path, work_dir: Path) -> Path:
        return fp32_onnx

    def content_sha256(self, build_onnx: Path) -> str:
        """Hash of every calibration batch (names, dtypes, shapes, bytes) and the seed table."""
        h = hashlib.sha256()
        for feed in self.batches():
            for name in sorted(feed):
                arr = np.ascontiguousarray(feed[name])
                h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
                h.update(arr.tobytes())
        if self.seed_table is not None:
            h.update(table_sha256(self.seed_table).encode())
        return h.hexdigest()

    @contextlib.contextmanager
    def calibrator(
        self, api: MemoryApi, trt_version: str, work_dir: Path
    ) -> Iterator[tuple[Any, CalibrationFeeder, CalibrationCacheIO]]:
        """(trt calibrator, feeder, cache I/O) for one build; frees device buffers on exit.

        Without ``cache_path`` the cache is named by the batches' content hash, so a cache
        from another calibration set is never picked up.
        """
        from workbench.backends.tensorrt.calibrator import make_entropy_calibrator

        default = work_dir / f"calibration-{self.content_sha256(work_dir)[:16]}.cache"
        cache_io = CalibrationCacheIO(
            self.cache_path or default,
            trt_version=trt_version,
            expected_tensors=None,
            seed_table=self.seed_table,
        )
        cache_io.prepare()
        feeder = CalibrationFeeder(self.batches(), api)
        with feeder, make_entropy_calibrator(feeder, cache_io) as calib:
            yield calib, feeder, cache_io
