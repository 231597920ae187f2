"""``MemoryApi`` implementations on a real GPU: cuda-python (``cuda.bindings``) or CuPy.

Imported lazily; a missing package or driver raises BackendUnavailableError naming the
``gpu`` extra. Every CUDA call's status is checked and turned into one readable error.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from workbench.errors import BackendUnavailableError, EngineBuildError

log = logging.getLogger(__name__)

GPU_HINT = "install the extra: pip install -e '.[gpu]' (cuda-python) or cupy-cuda12x"


def _import_cudart() -> ModuleType:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # older cuda-python layout

        return cudart
    except ImportError as exc:
        raise BackendUnavailableError(f"cuda-python is not installed: {GPU_HINT}") from exc


class CudaRuntimeApi:
    """``MemoryApi`` over the CUDA runtime via cuda-python; calls return ``(err, value...)``."""

    name = "cuda-python"
    is_device = True

    def __init__(self, device: int = 0) -> None:
        self._rt = _import_cudart()
        count = self._check(self._rt.cudaGetDeviceCount(), "cudaGetDeviceCount", unavailable=True)
        if not count:
            raise BackendUnavailableError("cuda-python found no CUDA device on this machine")
        self._check(self._rt.cudaSetDevice(device), "cudaSetDevice", unavailable=True)
        self.device = device

    def _check(self, result: Any, what: str, unavailable: bool = False) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            msg = self._rt.cudaGetErrorString(err)[1]
            text = msg.decode() if isinstance(msg, bytes) else str(msg)
            cls = BackendUnavailableError if unavailable else EngineBuildError
            raise cls(f"{what} failed: {text} ({err}); is the NVIDIA driver working (nvidia-smi)?")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self._rt.cudaFree(ptr), "cudaFree")

    def malloc_host(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))

    def free_host(self, ptr: int) -> None:
        self._check(self._rt.cudaFreeHost(ptr), "cudaFreeHost")

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def stream_create(self) -> int:
        return int(self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate"))

    def stream_destroy(self, stream: int) -> None:
        self._check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def stream_synchronize(self, stream: int) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def event_create(self) -> int:
        return int(self._check(self._rt.cudaEventCreate(), "cudaEventCreate"))

    def event_destroy(self, event: int) -> None:
        self._check(self._rt.cudaEventDestroy(event), "cudaEventDestroy")

    def event_record(self, event: int, stream: int) -> None:
        self._check(self._rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_elapsed_ms(self, start: int, end: int) -> float:
        self._check(self._rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._check(self._rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def device_name(self) -> str:
        result = self._rt.cudaGetDeviceProperties(self.device)
        props = self._check(result, "cudaGetDeviceProperties")
        name = props.name
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        return text.rstrip("\0")


class CupyApi:
    """``MemoryApi`` over ``cupy.cuda.runtime`` (used when cuda-python is absent)."""

    name = "cupy"
    is_device = True

    def __init__(self, device: int = 0) -> None:
        try:
            import cupy
        except ImportError as exc:
            raise BackendUnavailableError(f"CuPy is not installed: {GPU_HINT}") from exc
        self._rt = cupy.cuda.runtime
        try:
            if self._rt.getDeviceCount() < 1:
                raise BackendUnavailableError("CuPy found no CUDA device on this machine")
            self._rt.setDevice(device)
        except self._rt.CUDARuntimeError as exc:
            raise BackendUnavailableError(f"CuPy cannot use CUDA here: {exc}") from exc
        self.device = device

    def malloc(self, nbytes: int) -> int:
        return int(self._rt.malloc(nbytes))

    def free(self, ptr: int) -> None:
        self._rt.free(ptr)

    def malloc_host(self, nbytes: int) -> int:
        return int(self._rt.hostAlloc(nbytes, 0))  # cudaHostAllocDefault: pinned

    def free_host(self, ptr: int) -> None:
        self._rt.freeHost(ptr)

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self._rt.memcpyAsync(dst, src, nbytes, self._rt.memcpyHostToDevice, stream)

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self._rt.memcpyAsync(dst, src, nbytes, self._rt.memcpyDeviceToHost, stream)

    def stream_create(self) -> int:
        return int(self._rt.streamCreate())

    def stream_destroy(self, stream: int) -> None:
        self._rt.streamDestroy(stream)

    def stream_synchronize(self, stream: int) -> None:
        self._rt.streamSynchronize(stream)

    def event_create(self) -> int:
        return int(self._rt.eventCreate())

    def event_destroy(self, event: int) -> None:
        self._rt.eventDestroy(event)

    def event_record(self, event: int, stream: int) -> None:
        self._rt.eventRecord(event, stream)

    def event_elapsed_ms(self, start: int, end: int) -> float:
        self._rt.eventSynchronize(end)
        return float(self._rt.eventElapsedTime(start, end))

    def device_name(self) -> str:
        name = self._rt.getDeviceProperties(self.device)["name"]
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def get_memory_api(prefer: str | None = None, device: int = 0) -> CudaRuntimeApi | CupyApi:
    """The first usable GPU ``MemoryApi`` (cuda-python, then CuPy), or BackendUnavailableError.

    Example::

        api = get_memory_api()
        stream = api.stream_create()
    """
    order = [prefer] if prefer else ["cuda-python", "cupy"]
    reasons = []
    for name in order:
        try:
            return CudaRuntimeApi(device) if name == "cuda-python" else CupyApi(device)
        except BackendUnavailableError as exc:
            reasons.append(f"{name}: {exc}")
    raise BackendUnavailableError("no usable CUDA memory API: " + "; ".join(reasons))
