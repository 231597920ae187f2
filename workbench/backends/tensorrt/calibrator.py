"""``IInt8EntropyCalibrator2`` for TensorRT 10 implicit INT8, made by a factory (lazy import).

Deprecated by NVIDIA since TensorRT 10.1 and removed in 11: the class only exists on 10.x.
All the logic lives in ``feeding`` (TensorRT-free, tested on CPU); this subclass only
forwards TensorRT's callbacks to it. Modelled on Polygraphy's ``backend/trt/calibrator.py``.
"""

from __future__ import annotations

from typing import Any

from workbench.backends.tensorrt._trt import import_tensorrt, major_version
from workbench.backends.tensorrt.feeding import CalibrationCacheIO, CalibrationFeeder
from workbench.errors import ConfigError


def make_entropy_calibrator(feeder: CalibrationFeeder, cache_io: CalibrationCacheIO) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` serving ``feeder``'s batches; TensorRT 10 only.

    The returned object is a context manager that frees the feeder's device buffers.

    Example::

        with make_entropy_calibrator(feeder, cache_io) as calib:
            config.int8_calibrator = calib
            engine_bytes = builder.build_serialized_network(network, config)
        feeder.verify(cache_used=cache_io.cache_used)
    """
    trt = import_tensorrt()
    if major_version(trt) >= 11:
        raise ConfigError(
            f"TensorRT {trt.__version__} removed implicit INT8 calibration; use precision "
            "'int8-explicit' (a Q/DQ model from the workbench's calibration table)"
        )
    base = trt.IInt8EntropyCalibrator2

    class WorkbenchEntropyCalibrator(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)  # required for pybind11 trampolines (segfaults otherwise)
            self.feeder = feeder
            self.cache_io = cache_io

        def get_batch_size(self) -> int:
            # Deprecated since 10.0: with explicit batch the batch is the calibration
            # profile's dimension 0; trtexec's calibrator returns 1 too.
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            return self.feeder.get_batch(names)

        def read_calibration_cache(self) -> bytes | None:
            return self.cache_io.read()

        def write_calibration_cache(self, cache: Any) -> None:
            self.cache_io.write(bytes(memoryview(cache)))

        def __enter__(self) -> WorkbenchEntropyCalibrator:
            return self

        def __exit__(self, *exc: object) -> None:
            self.feeder.close()

    return WorkbenchEntropyCalibrator()
