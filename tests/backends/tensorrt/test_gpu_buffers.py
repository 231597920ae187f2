"""Device copies through cuda-python (or CuPy) on a real GPU; skipped where there is none."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.tensorrt.buffers import TensorBuffers
from workbench.backends.tensorrt.feeding import CalibrationFeeder, fixed_shape_batches
from workbench.errors import BackendUnavailableError


def test_no_gpu_means_backend_unavailable_not_a_crash() -> None:
    from workbench.backends.tensorrt.cuda import get_memory_api

    try:
        api = get_memory_api()
    except BackendUnavailableError as exc:
        assert "CUDA" in str(exc) or "cuda" in str(exc)
    else:
        assert api.is_device


@pytest.mark.gpu
def test_device_roundtrip_through_pinned_memory(memory_api) -> None:
    api = memory_api
    stream = api.stream_create()
    x = np.random.default_rng(0).normal(size=(32, 128)).astype(np.float32)
    with TensorBuffers(api) as bufs:
        ptr = bufs.upload("x", x, stream)
        assert ptr != 0
        got = bufs.download("x", x.shape, x.dtype, stream)
        np.testing.assert_array_equal(got, x)
        start, stop = api.event_create(), api.event_create()
        api.event_record(start, stream)
        for _ in range(10):
            bufs.enqueue_upload("x", stream)
        api.event_record(stop, stream)
        assert api.event_elapsed_ms(start, stop) >= 0.0
        api.event_destroy(start)
        api.event_destroy(stop)
    api.stream_destroy(stream)


@pytest.mark.gpu
def test_calibration_feeder_serves_device_pointers(memory_api) -> None:
    api = memory_api
    rng = np.random.default_rng(0)
    feeds = [
        {
            "input_ids": rng.integers(100, 30000, size=(3, w)),
            "attention_mask": np.ones((3, w), np.int64),
            "token_type_ids": np.zeros((3, w), np.int64),
        }
        for w in (7, 19, 32)
    ]
    batches = fixed_shape_batches(feeds, batch=2, seq=32)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    stream = api.stream_create()
    with CalibrationFeeder(batches, api) as feeder, TensorBuffers(api) as check:
        for want in batches:
            ptrs = feeder.get_batch(names)
            assert ptrs is not None and all(p != 0 for p in ptrs)
            host = check.stage("ids", np.empty((2, 32), np.int64))
            api.memcpy_dtoh_async(check.pinned_ptr("ids"), ptrs[0], host.nbytes, stream)
            api.stream_synchronize(stream)
            np.testing.assert_array_equal(host, want["input_ids"])
        assert feeder.get_batch(names) is None
        feeder.verify()
    api.stream_destroy(stream)
