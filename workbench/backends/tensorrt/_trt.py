"""The one place ``tensorrt`` is imported: lazily, with a message that says how to install it.

Nothing else in ``workbench.backends.tensorrt`` imports TensorRT at module level, so the package
(and ``workbench --help``) imports on a machine without it.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType
from typing import Any

from workbench.errors import BackendUnavailableError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install tensorrt (NVIDIA index; or the extra: pip install -e '.[tensorrt]'), "
    "on a machine with an NVIDIA GPU and driver"
)


@functools.lru_cache(maxsize=1)
def _import() -> ModuleType:
    import tensorrt  # the real bindings; never replaced or mocked

    return tensorrt


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailableError naming how to install it.

    Example::

        trt = import_tensorrt()
        builder = trt.Builder(make_logger(trt))
    """
    try:
        return _import()
    except ImportError as exc:
        raise BackendUnavailableError(f"TensorRT not installed: {INSTALL_HINT} ({exc})") from exc
    except OSError as exc:  # the wheel is there but libnvinfer cannot be loaded
        raise BackendUnavailableError(
            f"TensorRT is installed but its libraries do not load ({exc}); check the CUDA "
            f"driver and LD_LIBRARY_PATH, or reinstall: {INSTALL_HINT}"
        ) from exc


def availability() -> tuple[bool, str]:
    """(True, version) when TensorRT imports here, else (False, why not)."""
    try:
        trt = import_tensorrt()
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, str(trt.__version__)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.16.1.11"`` -> ``(10, 16, 1, 11)``; non-numeric parts stop the tuple."""
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


def make_logger(trt: ModuleType) -> Any:
    """A ``trt.ILogger`` that forwards to Python logging and remembers errors.

    Its ``errors`` list lets a failed build name TensorRT's own reason.
    """

    class _Logger(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind trampolines need the base __init__ called
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            sev = trt.ILogger.Severity
            if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                self.errors.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif severity == sev.WARNING:
                log.warning("TensorRT: %s", msg)
            elif severity == sev.INFO:
                log.info("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()
