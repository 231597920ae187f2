"""End-to-end through the registry on the tiny model: build -> open_runner -> int8_audit, compared
with ONNX Runtime. Marked ``tensorrt``: they skip with the install hint where TensorRT is absent.
They have NOT run on this project's machines (TensorRT cannot be installed here).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.backends.tensorrt.conftest import request_for
from workbench.backends.registry import get_backend
from workbench.errors import ConfigError, InputMismatchError

pytestmark = pytest.mark.tensorrt


def _ort(onnx_path, feed):
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {i.name: feed[i.name] for i in sess.get_inputs()})[0]


def _cos(a, b) -> float:
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _major() -> int:
    from workbench.backends.tensorrt._trt import import_tensorrt, major_version

    return major_version(import_tensorrt())


@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 3e-2)])
def test_float_engines_match_onnx_runtime(tiny_onnx, tiny_feeds, tmp_path, precision, atol):
    backend, req = get_backend("tensorrt"), request_for(tiny_onnx, precision, tmp_path)
    art = backend.build(req, None)
    assert backend.build(req, None) == art  # the second build reuses the cache entry
    with backend.open_runner(req, art) as runner:
        assert [s.name for s in runner.input_specs] == [
            "input_ids", "attention_mask", "token_type_ids",
        ]  # fmt: skip
        for feed in tiny_feeds:
            first = runner.infer(feed)["logits"]
            np.testing.assert_allclose(first, _ort(tiny_onnx, feed), atol=atol)
        runner.infer(tiny_feeds[1])
        np.testing.assert_allclose(first, _ort(tiny_onnx, tiny_feeds[-1]), atol=atol)  # a copy
        too_long = {k: np.tile(v, (1, 20))[:, :80] for k, v in tiny_feeds[0].items()}
        with pytest.raises(InputMismatchError, match="profile"):
            runner.infer(too_long)
    assert backend.int8_audit(req, art) is None


def test_int8_explicit_from_the_workbench_table(tiny_onnx, tiny_feeds, tmp_path) -> None:
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.table import calibrate

    table = calibrate(tiny_onnx, tiny_feeds, "entropy", open_runner=open_ort_runner).save(
        tmp_path / "t.json"
    )
    backend = get_backend("tensorrt")
    req = request_for(tiny_onnx, "int8-explicit", tmp_path, table=str(table))
    art = backend.build(req, None)
    cov = backend.int8_audit(req, art)
    assert cov is not None and cov.quantized_matmul > 0
    with backend.open_runner(req, art) as r:
        for feed in tiny_feeds:
            assert _cos(r.infer(feed)["logits"], _ort(tiny_onnx, feed)) > 0.98


def test_int8_implicit_calibrates_every_batch_and_keeps_its_ranges(
    tiny_onnx, tiny_feeds, tmp_path
) -> None:
    backend = get_backend("tensorrt")
    req = request_for(tiny_onnx, "int8-implicit", tmp_path)
    if _major() >= 11:
        with pytest.raises(ConfigError, match="int8-explicit"):
            backend.build(req, lambda: iter(tiny_feeds))
        return
    art = backend.build(req, lambda: iter(tiny_feeds))
    from pathlib import Path

    from workbench.calibration.table import CalibrationTable

    ranges = CalibrationTable.load(Path(art.model_path).with_name("tensorrt-ranges.json"))
    assert ranges.source == "tensorrt-cache" and len(ranges.amax) > 0
    with backend.open_runner(req, art) as r:
        for feed in tiny_feeds:
            assert _cos(r.infer(feed)["logits"], _ort(tiny_onnx, feed)) > 0.95
