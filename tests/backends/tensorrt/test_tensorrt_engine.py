"""End-to-end TensorRT tests on the tiny model: build, run, compare with ONNX Runtime.

Marked ``tensorrt`` (and ``gpu``): they skip with "TensorRT not installed" on machines
without it. They have NOT run on this project's machines (TensorRT cannot be installed
here); benchmarks/trt_gpu_check.sh runs them on a GPU box.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from workbench.backends.tensorrt import ImplicitCalibration, ShapeProfile, build_runner
from workbench.errors import CalibrationError, ConfigError, InputMismatchError

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]
PROFILE = ShapeProfile((1, 1), (2, 32), (4, 64))


def _ort(onnx_path, feed):
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {i.name: feed[i.name] for i in sess.get_inputs()})[0]


def _cos(a, b) -> float:
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _major() -> int:
    from workbench.backends.tensorrt._trt import import_tensorrt, major_version

    return major_version(import_tensorrt())


@pytest.fixture(scope="module")
def table(tiny_onnx, tiny_feeds):
    from workbench.calibration.table import calibrate

    return calibrate(tiny_onnx, tiny_feeds, "entropy")


@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 3e-2)])
def test_float_engines_match_onnx_runtime(tiny_onnx, tiny_feeds, precision, atol) -> None:
    with build_runner(tiny_onnx, precision, profile=PROFILE) as runner:
        for feed in tiny_feeds:
            got = runner.infer(feed)["logits"]
            np.testing.assert_allclose(got, _ort(tiny_onnx, feed), atol=atol)


def test_int8_explicit_from_the_workbench_table(tiny_onnx, tiny_feeds, table) -> None:
    from workbench.backends.tensorrt.builder import build_engine
    from workbench.backends.tensorrt.precision import EngineSpec
    from workbench.backends.tensorrt.strategies import ExplicitQDQ

    built = build_engine(tiny_onnx, EngineSpec("int8-explicit", PROFILE), ExplicitQDQ(table=table))
    assert built.audit is not None and built.audit.gemm_by_precision.get("int8", 0) > 0
    again = build_engine(tiny_onnx, EngineSpec("int8-explicit", PROFILE), ExplicitQDQ(table=table))
    assert again.from_cache and again.engine_path == built.engine_path
    with build_runner(tiny_onnx, "int8-explicit", calibration=table, profile=PROFILE) as r:
        for feed in tiny_feeds:
            assert _cos(r.infer(feed)["logits"], _ort(tiny_onnx, feed)) > 0.98


def test_int8_implicit_calibrates_every_batch_and_writes_a_readable_cache(
    tiny_onnx, tiny_feeds, tmp_path
) -> None:
    if _major() >= 11:
        with pytest.raises(ConfigError, match="int8-explicit"):
            build_runner(tiny_onnx, "int8-implicit", ImplicitCalibration(tiny_feeds, (2, 32)))
        return
    from workbench.backends.tensorrt.onnx_prep import trt_cache_to_qdq
    from workbench.calibration.trt_cache import read_trt_cache

    cache = tmp_path / "calib.cache"
    calib = ImplicitCalibration(tiny_feeds, shape=(2, 32), cache_path=cache)
    with build_runner(tiny_onnx, "int8-implicit", calib, profile=PROFILE) as r:
        for feed in tiny_feeds:
            assert _cos(r.infer(feed)["logits"], _ort(tiny_onnx, feed)) > 0.95
    table = read_trt_cache(cache)
    assert len(table.amax) > 0
    qdq = trt_cache_to_qdq(cache, tiny_onnx, tmp_path / "bridge.qdq.onnx")
    with build_runner(tiny_onnx, "int8-explicit", calibration=qdq, profile=PROFILE) as r:
        assert r.infer(tiny_feeds[0])["logits"].shape == (2, 2)


def test_calibration_that_stops_early_fails_loudly(tiny_onnx, tiny_feeds) -> None:
    if _major() >= 11:
        pytest.skip("implicit calibration does not exist in TensorRT 11")
    bad = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in tiny_feeds]
    with pytest.raises(CalibrationError, match="token_type_ids"):
        build_runner(tiny_onnx, "int8-implicit", ImplicitCalibration(bad, (2, 32)), profile=PROFILE)


def test_latency_throughput_and_profile_bounds(tiny_onnx, tiny_feeds) -> None:
    with build_runner(tiny_onnx, "fp16", profile=PROFILE, contexts=2) as r:
        feed = tiny_feeds[0]
        with_copies = r.measure_latency(feed, iterations=20, warmup=3, include_copies=True)
        no_copies = r.measure_latency(feed, iterations=20, warmup=3, include_copies=False)
        assert with_copies.timer == no_copies.timer == "cuda_event"
        assert with_copies.includes_host_device_copies and not no_copies.includes_host_device_copies
        assert len(no_copies.samples_ms) == 20 and no_copies.p50_ms > 0
        tp = r.measure_throughput(feed, iterations=10)
        assert tp.streams == 2 and tp.throughput_seq_per_s > 0
        too_long = {k: np.tile(v, (1, 40))[:, :80] for k, v in feed.items()}
        with pytest.raises(InputMismatchError, match="profile"):
            r.infer(too_long)
