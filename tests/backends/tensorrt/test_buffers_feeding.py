"""Buffer management and calibration feeding on host memory (every machine, no TensorRT)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from workbench.backends.tensorrt.buffers import (
    DeviceBuffer,
    HostMemoryApi,
    PinnedArray,
    TensorBuffers,
)
from workbench.backends.tensorrt.feeding import (
    CalibrationCacheIO,
    CalibrationFeeder,
    fixed_shape_batches,
)
from workbench.errors import CalibrationError, InputMismatchError


def _read(ptr: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_ubyte * nbytes).from_address(ptr)
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape)


def test_device_buffer_grows_never_shrinks_and_frees_once() -> None:
    api = HostMemoryApi()
    buf = DeviceBuffer(api, 16)
    first = buf.ptr
    assert buf.ensure(8) == first and buf.capacity == 16
    assert buf.ensure(64) != 0 and buf.capacity == 64
    assert api.live_allocations == 1
    buf.free()
    buf.free()  # idempotent
    assert api.live_allocations == 0


def test_pinned_views_take_any_shape_and_dtype() -> None:
    api = HostMemoryApi()
    pin = PinnedArray(api)
    v = pin.view((2, 3), np.int64)
    v[:] = np.arange(6).reshape(2, 3)
    assert pin.capacity == 48
    assert pin.view((12,), np.int32).shape == (12,) and pin.capacity == 48
    pin.free()
    assert api.live_allocations == 0


def test_tensor_buffers_roundtrip_through_device_memory() -> None:
    api = HostMemoryApi()
    ids = np.arange(24, dtype=np.int64).reshape(4, 6)
    with TensorBuffers(api) as bufs:
        ptr = bufs.upload("input_ids", ids, stream=1)
        np.testing.assert_array_equal(_read(ptr, (4, 6), np.int64), ids)
        ids[0, 0] = 99  # the device copy does not alias the caller's array
        assert _read(ptr, (4, 6), np.int64)[0, 0] == 0
        out_ptr = bufs.device_for("logits", (4, 2), np.float32)
        ctypes.memmove(out_ptr, np.ones((4, 2), np.float32).ctypes.data, 32)
        got = bufs.download("logits", (4, 2), np.float32, stream=1)
        np.testing.assert_array_equal(got, np.ones((4, 2), np.float32))
        with pytest.raises(InputMismatchError, match="device_for"):
            bufs.download("logits", (40, 2), np.float32, stream=1)
        assert api.copies == [("htod", 192), ("dtoh", 32)]
    assert api.live_allocations == 0
    with pytest.raises(RuntimeError, match="after close"):
        bufs.upload("x", ids, 1)


def test_enqueue_upload_copies_only_the_staged_bytes() -> None:
    api = HostMemoryApi()
    with TensorBuffers(api) as bufs:
        bufs.stage("x", np.zeros((8, 8), np.int64))
        bufs.stage("x", np.ones((2, 2), np.int64))  # smaller; pinned buffer keeps 512 bytes
        ptr = bufs.enqueue_upload("x", stream=1)
        assert api.copies == [("htod", 32)]
        np.testing.assert_array_equal(_read(ptr, (2, 2), np.int64), np.ones((2, 2)))
        with pytest.raises(InputMismatchError, match="stage"):
            bufs.enqueue_upload("never-staged", stream=1)


def _feeds(n_rows: list[int], width: int) -> list[dict[str, np.ndarray]]:
    feeds, start = [], 0
    for n in n_rows:
        ids = np.arange(start, start + n, dtype=np.int64)[:, None] + 1000 * np.arange(width)
        feeds.append(
            {
                "input_ids": ids,
                "attention_mask": np.ones((n, width), np.int64),
                "token_type_ids": np.zeros((n, width), np.int64),
            }
        )
        start += n
    return feeds


def test_fixed_shape_batches_cover_every_sample_once_with_distinct_arrays() -> None:
    feeds = _feeds([5, 3, 2], width=4) + _feeds([3], width=7)  # 13 rows, varied widths
    batches = fixed_shape_batches(feeds, batch=4, seq=6, pad_id=0)
    assert len(batches) == 4  # ceil(13 / 4)
    for b in batches:
        assert {k: v.shape for k, v in b.items()} == {k: (4, 6) for k in b}
    ids = np.concatenate([b["input_ids"][:, 0] for b in batches])
    assert sorted(ids[:13].tolist()) == sorted([*range(10), *range(3)])  # every row once
    assert ids[13:].tolist() == ids[:3].tolist()  # last batch wraps to the first rows
    assert batches[0]["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]  # padded
    assert batches[3]["attention_mask"][0].tolist() == [1] * 6  # cut to seq
    arrays = [id(a) for b in batches for a in b.values()]
    assert len(set(arrays)) == len(arrays)  # no aliasing between batches
    batches[0]["input_ids"][:] = -1
    assert (batches[1]["input_ids"] != -1).all()


def test_fixed_shape_batches_errors() -> None:
    with pytest.raises(CalibrationError, match="empty"):
        fixed_shape_batches([], 4, 8)
    bad = {"input_ids": np.zeros((3, 4), np.int64), "attention_mask": np.zeros((2, 4), np.int64)}
    with pytest.raises(InputMismatchError, match="row counts"):
        fixed_shape_batches([bad], 4, 8)


NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def test_feeder_serves_each_batch_once_then_none_and_verifies() -> None:
    api = HostMemoryApi()
    batches = fixed_shape_batches(_feeds([6], width=5), batch=2, seq=8)
    with CalibrationFeeder(batches, api) as feeder:
        seen = []
        while (ptrs := feeder.get_batch(NAMES)) is not None:
            assert len(ptrs) == 3
            seen.append(_read(ptrs[0], (2, 8), np.int64).copy())
        assert feeder.served == feeder.expected == 3
        np.testing.assert_array_equal(
            np.concatenate(seen), np.concatenate([b["input_ids"] for b in batches])
        )
        feeder.verify()
    assert api.live_allocations == 0


def test_feeder_fails_loudly_when_tensorrt_stops_early() -> None:
    feeder = CalibrationFeeder(fixed_shape_batches(_feeds([8], 4), 2, 4), HostMemoryApi())
    feeder.get_batch(NAMES)
    with pytest.raises(CalibrationError, match="1 of 4 batches"):
        feeder.verify()
    feeder.verify(cache_used=True)  # a cache hit legitimately skips calibration
    feeder.close()


def test_feeder_keeps_callback_errors_instead_of_ending_silently() -> None:
    feeder = CalibrationFeeder(fixed_shape_batches(_feeds([4], 4), 2, 4), HostMemoryApi())
    assert feeder.get_batch(["input_ids", "pixel_values"]) is None  # what TensorRT would see
    assert feeder.get_batch(NAMES) is None  # stays stopped after an error
    with pytest.raises(CalibrationError, match="pixel_values"):
        feeder.verify()
    feeder.close()


def _trt_cache_module():
    return pytest.importorskip(
        "workbench.calibration.trt_cache", reason="workbench.calibration.trt_cache not landed yet"
    )


# TensorRT's calibration cache text: a "TRT-<version>-<algorithm>" header, then one
# "<tensor>: <float32 scale as big-endian hex bits>" line per tensor.
VALID_CACHE = b"TRT-101601-EntropyCalibration2\nlogits: 3c010a14\nhidden: 3d4ccccd\n"


def test_cache_io_stores_and_parses_what_tensorrt_writes(tmp_path: Path) -> None:
    _trt_cache_module()
    io = CalibrationCacheIO(tmp_path / "sub" / "c.cache", trt_version="10.16.1")
    io.prepare()
    assert io.read() is None and not io.cache_used  # no cache yet: TensorRT calibrates
    io.write(VALID_CACHE)
    io.verify()
    assert (tmp_path / "sub" / "c.cache").read_bytes() == VALID_CACHE
    assert io.table is not None
    again = CalibrationCacheIO(tmp_path / "sub" / "c.cache", trt_version="10.16.1")
    again.prepare()
    assert again.read() == VALID_CACHE and again.cache_used


def test_cache_io_write_errors_are_kept_for_verify(tmp_path: Path) -> None:
    _trt_cache_module()
    io = CalibrationCacheIO(tmp_path / "c.cache", trt_version="10.16.1")
    io.write(b"not a TensorRT calibration cache\n\x00\x01")
    if io.error is None:
        pytest.skip("read_trt_cache accepted malformed bytes; nothing to verify here")
    with pytest.raises(CalibrationError, match="could not be stored/parsed"):
        io.verify()
