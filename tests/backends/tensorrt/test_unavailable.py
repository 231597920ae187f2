"""Without TensorRT every entry point says so with BackendUnavailableError (CLI exit 3)."""

from __future__ import annotations

import sys

import pytest

from workbench.backends.tensorrt import availability, build_runner
from workbench.backends.tensorrt.feeding import CalibrationCacheIO, CalibrationFeeder
from workbench.errors import BackendUnavailableError, ConfigError

ok, _ = availability()
needs_absent = pytest.mark.skipif(ok, reason="TensorRT is installed here")


@needs_absent
def test_build_runner_names_the_install(tmp_path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    with pytest.raises(
        BackendUnavailableError, match=r"^TensorRT not installed: pip install tensorrt"
    ):
        build_runner(model, "fp16")
    assert BackendUnavailableError.exit_code == 3


@needs_absent
def test_runner_and_calibrator_are_unavailable_too(tmp_path) -> None:
    from workbench.backends.tensorrt.buffers import HostMemoryApi
    from workbench.backends.tensorrt.calibrator import make_entropy_calibrator
    from workbench.backends.tensorrt.runner import TensorRTRunner

    with pytest.raises(BackendUnavailableError, match="TensorRT not installed"):
        TensorRTRunner(tmp_path / "x.plan", api=HostMemoryApi())
    import numpy as np

    feeder = CalibrationFeeder([{"input_ids": np.zeros((1, 8), np.int64)}], HostMemoryApi())
    with pytest.raises(BackendUnavailableError, match="TensorRT not installed"):
        make_entropy_calibrator(feeder, CalibrationCacheIO(tmp_path / "c", "10.16.1"))
    feeder.close()


def test_bad_precision_is_a_config_error_before_anything_else(tmp_path) -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        build_runner(tmp_path / "m.onnx", "int4")


def test_importing_the_backend_never_imports_tensorrt() -> None:
    import importlib

    for mod in (
        "workbench.backends.tensorrt",
        "workbench.backends.tensorrt",
        "workbench.backends.tensorrt.builder",
        "workbench.backends.tensorrt.runner",
        "workbench.backends.tensorrt.calibrator",
        "workbench.commands.doctor",
    ):
        importlib.import_module(mod)
    if not ok:
        assert "tensorrt" not in sys.modules
