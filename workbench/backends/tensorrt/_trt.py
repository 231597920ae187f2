"""The one place ``tensorrt`` and Polygraphy are imported: lazily, with how to install them.

Nothing else in ``workbench.backends.tensorrt`` imports either at module level, so
``import workbench`` and the ONNX Runtime path work on a machine without them.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from types import ModuleType

from workbench.errors import BackendUnavailableError, WorkbenchError

TRT_HINT = (
    "TensorRT is not installed: its libraries come only from NVIDIA's package index; "
    "pip install tensorrt --extra-index-url https://pypi.nvidia.com"
)
POLYGRAPHY_HINT = (
    "Polygraphy is not installed: pip install polygraphy (in the extra: '.[tensorrt]')"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailableError saying how to install it.

    Example::

        trt = import_tensorrt()
        print(trt.__version__)
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(f"{TRT_HINT} ({exc})") from exc
    except OSError as exc:  # the wheel is there but libnvinfer does not load
        raise BackendUnavailableError(
            f"TensorRT is installed but its libraries do not load ({exc}); check the NVIDIA "
            "driver and LD_LIBRARY_PATH, or reinstall it from https://pypi.nvidia.com"
        ) from exc
    try:
        from polygraphy.logger import G_LOGGER  # Polygraphy does the building and running
    except ImportError as exc:
        raise BackendUnavailableError(POLYGRAPHY_HINT) from exc
    G_LOGGER.use_python_logging_system = True  # its messages go to logging, not stdout
    return tensorrt


def availability() -> tuple[bool, str]:
    """(True, TensorRT version) when TensorRT and Polygraphy import here, else (False, why)."""
    try:
        trt = import_tensorrt()
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, str(trt.__version__)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.16.1.11"`` -> ``(10, 16, 1, 11)``; a non-numeric part ends the tuple."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def major_version(trt: ModuleType) -> int:
    """Major version of an imported ``tensorrt`` module."""
    return version_tuple(str(trt.__version__))[0]


def gpu_tag() -> str:
    """``"sm90"``: compute capability of CUDA device 0, the boundary engines cannot cross.

    Read through Polygraphy's CUDA runtime wrapper (``cudaDeviceGetAttribute`` 75/76).
    """
    from polygraphy import cuda

    handle = cuda.wrapper().handle
    major, minor = ctypes.c_int(), ctypes.c_int()
    for attr, out in ((75, major), (76, minor)):  # cudaDevAttrComputeCapabilityMajor/Minor
        status = handle.cudaDeviceGetAttribute(ctypes.byref(out), attr, 0)
        if status != 0:
            raise BackendUnavailableError(
                f"no usable CUDA device (cudaDeviceGetAttribute returned {status}); "
                "check nvidia-smi and CUDA_VISIBLE_DEVICES"
            )
    return f"sm{major.value}{minor.value}"


@contextlib.contextmanager
def polygraphy_errors(error: type[WorkbenchError], what: str) -> Iterator[None]:
    """Turn Polygraphy's exception (its log already holds TensorRT's messages) into ``error``."""
    from polygraphy.exception import PolygraphyException

    try:
        yield
    except PolygraphyException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "see the log above"
        raise error(f"{what}: {first}") from exc
