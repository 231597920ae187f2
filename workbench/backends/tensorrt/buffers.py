"""Host/device buffer management behind a small memory interface, testable without a GPU.

``MemoryApi`` is what the runner and the calibrator need from CUDA (malloc, pinned host
memory, async copies, streams, events). ``workbench.backends.tensorrt.cuda`` implements it with
cuda-python (or CuPy); ``HostMemoryApi`` here implements it with plain host memory so the
buffer logic (growth, dtype/shape views, copies, freeing) is exercised on any machine.
Pointers from ``HostMemoryApi`` are host addresses: TensorRT can never use them.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from workbench.closing import Closeable
from workbench.errors import InputMismatchError


class MemoryApi(Protocol):
    """The CUDA runtime calls the TensorRT backend uses; handles are plain ints."""

    name: str
    is_device: bool

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def malloc_host(self, nbytes: int) -> int: ...
    def free_host(self, ptr: int) -> None: ...
    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None: ...
    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: int) -> None: ...
    def stream_create(self) -> int: ...
    def stream_destroy(self, stream: int) -> None: ...
    def stream_synchronize(self, stream: int) -> None: ...
    def event_create(self) -> int: ...
    def event_destroy(self, event: int) -> None: ...
    def event_record(self, event: int, stream: int) -> None: ...
    def event_elapsed_ms(self, start: int, end: int) -> float: ...


class HostMemoryApi:
    """``MemoryApi`` over ordinary host memory: for testing buffer logic on CPU-only machines.

    Copies are synchronous ``memmove``; events read ``perf_counter_ns`` when recorded.
    """

    name = "host"
    is_device = False

    def __init__(self) -> None:
        self._blocks: dict[int, ctypes.Array[ctypes.c_ubyte]] = {}
        self._events: dict[int, int] = {}
        self._next_handle = 1
        self.copies: list[tuple[str, int]] = []  # ("htod"|"dtoh", nbytes), for tests

    def _alloc(self, nbytes: int) -> int:
        block = (ctypes.c_ubyte * max(1, nbytes))()
        ptr = ctypes.addressof(block)
        self._blocks[ptr] = block
        return ptr

    def _release(self, ptr: int) -> None:
        if self._blocks.pop(ptr, None) is None:
            raise RuntimeError(f"free of unknown pointer {ptr:#x} (double free?)")

    def malloc(self, nbytes: int) -> int:
        return self._alloc(nbytes)

    def free(self, ptr: int) -> None:
        self._release(ptr)

    def malloc_host(self, nbytes: int) -> int:
        return self._alloc(nbytes)

    def free_host(self, ptr: int) -> None:
        self._release(ptr)

    @property
    def live_allocations(self) -> int:
        """How many blocks are allocated and not yet freed."""
        return len(self._blocks)

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        ctypes.memmove(dst, src, nbytes)
        self.copies.append(("htod", nbytes))

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        ctypes.memmove(dst, src, nbytes)
        self.copies.append(("dtoh", nbytes))

    def _handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def stream_create(self) -> int:
        return self._handle()

    def stream_destroy(self, stream: int) -> None:
        return None

    def stream_synchronize(self, stream: int) -> None:
        return None

    def event_create(self) -> int:
        handle = self._handle()
        self._events[handle] = 0
        return handle

    def event_destroy(self, event: int) -> None:
        self._events.pop(event, None)

    def event_record(self, event: int, stream: int) -> None:
        self._events[event] = time.perf_counter_ns()

    def event_elapsed_ms(self, start: int, end: int) -> float:
        return (self._events[end] - self._events[start]) / 1e6


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    """A uint8 NumPy view of ``nbytes`` at host address ``ptr`` (no copy)."""
    if nbytes == 0:
        return np.empty(0, dtype=np.uint8)
    raw = (ctypes.c_ubyte * nbytes).from_address(ptr)
    return np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)


class DeviceBuffer:
    """One device allocation that grows on demand (never shrinks) and is freed once."""

    def __init__(self, api: MemoryApi, nbytes: int = 0) -> None:
        self._api = api
        self.ptr = 0
        self.capacity = 0
        if nbytes:
            self.ensure(nbytes)

    def ensure(self, nbytes: int) -> int:
        """Make room for ``nbytes`` (reallocating if smaller); return the pointer."""
        if nbytes > self.capacity:
            self.free()
            self.ptr = self._api.malloc(nbytes)
            self.capacity = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self._api.free(self.ptr)
        self.ptr = 0
        self.capacity = 0


class PinnedArray:
    """Page-locked host staging memory, handed out as NumPy views of any shape/dtype."""

    def __init__(self, api: MemoryApi, nbytes: int = 0) -> None:
        self._api = api
        self.ptr = 0
        self.capacity = 0
        if nbytes:
            self._grow(nbytes)

    def _grow(self, nbytes: int) -> None:
        if nbytes > self.capacity:
            self.free()
            self.ptr = self._api.malloc_host(nbytes)
            self.capacity = nbytes

    def view(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A writable array of ``shape``/``dtype`` over this memory (grown if needed)."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = count * dt.itemsize
        self._grow(nbytes)
        return _host_view(self.ptr, nbytes).view(dt).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self._api.free_host(self.ptr)
        self.ptr = 0
        self.capacity = 0


class TensorBuffers(Closeable):
    """Named pinned-host + device buffer pairs for one stream; a context manager.

    Example::

        with TensorBuffers(api) as bufs:
            ptr = bufs.upload("input_ids", ids, stream)     # async H2D from pinned memory
            out_ptr = bufs.device_for("logits", (8, 2), np.float32)
            ...  # run
            logits = bufs.download("logits", (8, 2), np.float32, stream)
    """

    def __init__(self, api: MemoryApi) -> None:
        self.api = api
        self._host: dict[str, PinnedArray] = {}
        self._device: dict[str, DeviceBuffer] = {}
        self._staged: dict[str, int] = {}  # bytes last staged per name
        self._closed = False

    def _pair(self, name: str) -> tuple[PinnedArray, DeviceBuffer]:
        if self._closed:
            raise RuntimeError("TensorBuffers used after close()")
        if name not in self._host:
            self._host[name] = PinnedArray(self.api)
            self._device[name] = DeviceBuffer(self.api)
        return self._host[name], self._device[name]

    def stage(self, name: str, array: np.ndarray) -> np.ndarray:
        """Copy ``array`` into this name's pinned buffer; return the pinned view."""
        arr = np.ascontiguousarray(array)
        host, _ = self._pair(name)
        pinned = host.view(arr.shape, arr.dtype)
        np.copyto(pinned, arr)
        self._staged[name] = pinned.nbytes
        return pinned

    def upload(self, name: str, array: np.ndarray, stream: int) -> int:
        """Stage ``array`` in pinned memory, enqueue its H2D copy; return the device pointer."""
        self.stage(name, array)
        return self.enqueue_upload(name, stream)

    def enqueue_upload(self, name: str, stream: int) -> int:
        """Enqueue the H2D copy of what ``stage`` last put in this name's pinned buffer."""
        host, dev = self._pair(name)
        if name not in self._staged:
            raise InputMismatchError(f"nothing staged for {name!r}; call stage() first")
        nbytes = self._staged[name]
        ptr = dev.ensure(max(1, nbytes))
        if nbytes:
            self.api.memcpy_htod_async(ptr, host.ptr, nbytes, stream)
        return ptr

    def device_for(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> int:
        """A device pointer with room for ``shape``/``dtype`` (for outputs)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        _, dev = self._pair(name)
        return dev.ensure(max(1, nbytes))

    def enqueue_download(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype | type, stream: int
    ) -> np.ndarray:
        """Enqueue a D2H copy into pinned memory; the returned view is valid after a sync."""
        host, dev = self._pair(name)
        pinned = host.view(shape, dtype)
        if pinned.nbytes > dev.capacity:
            raise InputMismatchError(
                f"output {name!r} needs {pinned.nbytes} bytes but its device buffer has "
                f"{dev.capacity}; allocate it with device_for() at this shape first"
            )
        if pinned.nbytes:
            self.api.memcpy_dtoh_async(host.ptr, dev.ptr, pinned.nbytes, stream)
        return pinned

    def download(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype | type, stream: int
    ) -> np.ndarray:
        """Copy a device tensor to a fresh host array (synchronizes ``stream``)."""
        pinned = self.enqueue_download(name, shape, dtype, stream)
        self.api.stream_synchronize(stream)
        return pinned.copy()  # the pinned buffer is reused by the next call

    def pinned_ptr(self, name: str) -> int:
        """Host address of this name's pinned buffer (0 before anything was staged)."""
        return self._pair(name)[0].ptr

    def names(self) -> Iterator[str]:
        return iter(list(self._host))

    def close(self) -> None:
        """Free every buffer (idempotent)."""
        for host in self._host.values():
            host.free()
        for dev in self._device.values():
            dev.free()
        self._host.clear()
        self._device.clear()
        self._staged.clear()
        self._closed = True
