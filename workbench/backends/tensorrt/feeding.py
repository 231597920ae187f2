"""Calibration batch feeding and cache I/O: the TensorRT-free half of the implicit calibrator.

TensorRT swallows exceptions raised in calibrator callbacks and reads them as "no more
data", so a bug would silently calibrate on a prefix of the set. ``CalibrationFeeder``
never raises from a callback: it records the error and the batch count, and
``verify()`` (called by the builder after the build) raises ``CalibrationError`` when
calibration saw fewer batches than expected or a callback failed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.tensorrt.buffers import MemoryApi, TensorBuffers
from workbench.closing import Closeable
from workbench.errors import CalibrationError, InputMismatchError
from workbench.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def fixed_shape_batches(feeds: Iterable[Feed], batch: int, seq: int, pad_id: int = 0) -> list[Feed]:
    """Re-batch tokenizer feeds into batches of exactly (batch, seq): the calibration profile shape.

    Rows are padded (input_ids with ``pad_id``, masks and type ids with 0) or cut to ``seq``.
    Every sample appears; the last batch is topped up by wrapping around to the first
    samples, so ``ceil(n / batch)`` batches come out. Each batch owns fresh arrays.
    """
    if batch < 1 or seq < 1:
        raise CalibrationError(f"calibration shape must be positive, got ({batch}, {seq})")
    rows: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        for name, arr in feed.items():
            a = np.asarray(arr)
            if a.ndim != 2:
                raise InputMismatchError(f"calibration input {name!r} must be 2-D, got {a.shape}")
            rows.setdefault(name, []).extend(a)
    if not rows:
        raise CalibrationError("the calibration set yielded no batches; is it empty?")
    counts = {name: len(r) for name, r in rows.items()}
    if len(set(counts.values())) != 1:
        raise InputMismatchError(f"calibration inputs have different row counts: {counts}")
    n = next(iter(counts.values()))
    n_batches = math.ceil(n / batch)
    out: list[Feed] = []
    for b in range(n_batches):
        idx = [(b * batch + i) % n for i in range(batch)]
        feed_b: Feed = {}
        for name, r in rows.items():
            fill = pad_id if name == "input_ids" else 0
            arr = np.full((batch, seq), fill, dtype=r[0].dtype)
            for j, i in enumerate(idx):
                row = r[i][:seq]
                arr[j, : len(row)] = row
            feed_b[name] = arr
        out.append(feed_b)
    return out


class CalibrationFeeder(Closeable):
    """Serves calibration batches as device pointers and counts them; a context manager.

    Example::

        with CalibrationFeeder(batches, get_memory_api()) as feeder:
            ptrs = feeder.get_batch(["input_ids", "attention_mask", "token_type_ids"])
    """

    def __init__(self, batches: Sequence[Feed], api: MemoryApi) -> None:
        if not batches:
            raise CalibrationError("no calibration batches; build the calibration set first")
        self.batches = list(batches)
        self.expected = len(self.batches)
        self.served = 0
        self.error: BaseException | None = None
        self._buffers = TensorBuffers(api)
        self._api = api
        self._stream = api.stream_create()

    @property
    def shape(self) -> tuple[int, ...]:
        first = next(iter(self.batches[0].values()))
        return tuple(first.shape)

    def get_batch(self, names: Sequence[str]) -> list[int] | None:
        """Device pointers of the next batch in ``names`` order; None at the end or on error."""
        if self.error is not None or self.served >= self.expected:
            return None
        try:
            feed = self.batches[self.served]
            missing = [n for n in names if n not in feed]
            if missing:
                raise InputMismatchError(
                    f"TensorRT asks for calibration input(s) {missing}; the batches have "
                    f"{sorted(feed)} — does the calibration set match the model?"
                )
            ptrs = [self._buffers.upload(str(n), feed[str(n)], self._stream) for n in names]
            self._api.stream_synchronize(self._stream)
        except Exception as exc:  # TensorRT would swallow it; verify() re-raises
            self.error = exc
            log.error("calibration batch %d failed: %s", self.served + 1, exc)
            return None
        self.served += 1
        log.debug("calibration batch %d/%d", self.served, self.expected)
        return ptrs

    def verify(self, cache_used: bool = False) -> None:
        """Raise CalibrationError if a callback failed or fewer batches than expected were seen."""
        if self.error is not None:
            raise CalibrationError(
                f"calibration stopped at batch {self.served + 1}/{self.expected}: {self.error}"
            ) from self.error
        if not cache_used and self.served < self.expected:
            raise CalibrationError(
                f"TensorRT calibrated on {self.served} of {self.expected} batches; it stopped "
                "early (see TensorRT's log above) — the INT8 ranges are not trustworthy"
            )

    def close(self) -> None:
        """Free the device buffers and the stream (idempotent)."""
        self._buffers.close()
        if self._stream:
            self._api.stream_destroy(self._stream)
            self._stream = 0


class CalibrationCacheIO:
    """TensorRT calibration-cache reads/writes through ``workbench.calibration.trt_cache``.

    ``prepare()`` runs before the build (where errors can be raised normally) and decides
    what ``read()`` hands TensorRT: the bytes of a seed ``CalibrationTable`` written in
    TensorRT's format, a validated existing cache file, or None (calibrate). ``write()``
    stores TensorRT's cache atomically and parses it back into ``self.table``.
    """

    def __init__(
        self,
        path: str | Path,
        trt_version: str,
        expected_tensors: Sequence[str] | None = None,
        seed_table: Any = None,
    ) -> None:
        self.path = Path(path)
        self.trt_version = trt_version
        self.expected_tensors = list(expected_tensors) if expected_tensors else None
        self.seed_table = seed_table
        self.table: Any = None
        self.error: BaseException | None = None
        self._bytes: bytes | None = None
        self.cache_used = False

    def prepare(self) -> None:
        """Validate an existing cache or write the seed table (errors raise here, not in TRT)."""
        from workbench.calibration.trt_cache import read_trt_cache, write_trt_cache

        if self.seed_table is not None:
            write_trt_cache(self.seed_table, self.path, trt_version=self.trt_version)
        if self.path.is_file():
            self.table = read_trt_cache(self.path, expected_tensors=self.expected_tensors)
            self._bytes = self.path.read_bytes()
            log.info("using calibration cache %s (%d tensors)", self.path, _table_len(self.table))

    def read(self) -> bytes | None:
        """What ``read_calibration_cache`` returns: validated cache bytes or None."""
        self.cache_used = self._bytes is not None
        return self._bytes

    def write(self, data: bytes) -> None:
        """What ``write_calibration_cache`` does; never raises (errors kept for ``verify``)."""
        try:
            from workbench.calibration.trt_cache import read_trt_cache

            atomic_write_bytes(self.path, data)
            self.table = read_trt_cache(self.path, expected_tensors=None)
            self._bytes = data
            log.info("wrote calibration cache %s", self.path)
        except Exception as exc:  # re-raised by verify(), outside TensorRT
            self.error = exc

    def verify(self) -> None:
        """Raise CalibrationError if writing or parsing TensorRT's cache failed."""
        if self.error is not None:
            raise CalibrationError(
                f"TensorRT's calibration cache could not be stored/parsed at {self.path}: "
                f"{self.error}"
            ) from self.error


def _table_len(table: Any) -> int:
    try:
        return len(table)
    except TypeError:
        return -1
