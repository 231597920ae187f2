"""Profiles from token lengths and the precision table: pure functions, NumPy oracles."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.tensorrt.precision import PRECISIONS, EngineSpec, plan_precision
from workbench.backends.tensorrt.profiles import (
    ShapeProfile,
    calibration_shape,
    derive_profile,
    length_summary,
    round_up,
    typical_padded_length,
)
from workbench.errors import ConfigError, DataError


def test_typical_padded_length_matches_a_simulated_batch_maximum() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=5000)
    batch = 16
    sim = np.median([rng.choice(lengths, batch).max() for _ in range(4000)])
    got = typical_padded_length(lengths, batch)
    assert abs(got - sim) <= 6  # the batch/(batch+1) quantile tracks the batch max


def test_derive_profile_shapes() -> None:
    lengths = np.array([7, 9, 12, 15, 20, 31, 33, 40, 64, 200])
    prof = derive_profile(lengths, max_length=128, opt_batch=8, max_batch=32)
    assert prof.min == (1, 1)
    assert prof.max == (32, 128)  # truncation caps every feed at max_length
    opt_seq = prof.opt[1]
    assert opt_seq % 8 == 0 and opt_seq <= 128
    assert opt_seq >= np.quantile(lengths, 8 / 9, method="higher")
    assert prof.contains((8, 100)) and not prof.contains((33, 10)) and not prof.contains((1, 129))


def test_derive_profile_never_exceeds_max_length() -> None:
    prof = derive_profile([300, 400, 500], max_length=64, opt_batch=4, max_batch=4)
    assert prof.opt == (4, 64) and prof.max == (4, 64)


def test_profile_validation_and_errors() -> None:
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        ShapeProfile((1, 1), (64, 32), (32, 128))
    with pytest.raises(DataError, match="non-empty"):
        derive_profile([], max_length=128, opt_batch=8, max_batch=8)
    with pytest.raises(DataError, match=">= 1"):
        derive_profile([0, 3], max_length=128, opt_batch=8, max_batch=8)


def test_calibration_shape_covers_every_calibration_text() -> None:
    assert calibration_shape([5, 17, 33], max_length=128, batch=16) == (16, 40)
    assert calibration_shape([5, 300], max_length=128, batch=8) == (8, 128)
    assert ShapeProfile.fixed(16, 40).as_dict() == {
        "min": [16, 40],
        "opt": [16, 40],
        "max": [16, 40],
    }


def test_round_up_and_summary() -> None:
    assert [round_up(x, 8) for x in (1, 8, 9, 16)] == [8, 8, 16, 16]
    s = length_summary([10, 20, 200], max_length=128)
    assert s["max"] == 200 and s["truncated_share"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("major", [10, 11])
def test_plans_for_both_major_versions(major: int) -> None:
    fp32 = plan_precision("fp32", major)
    assert fp32.strongly_typed and fp32.clear_tf32 and fp32.onnx_transform == "none"
    explicit = plan_precision("int8-explicit", major)
    assert explicit.strongly_typed and explicit.onnx_transform == "qdq"
    assert not explicit.uses_calibrator and not explicit.fp16_flag
    fp16 = plan_precision("fp16", major)
    if major == 10:
        assert fp16.fp16_flag and not fp16.strongly_typed and fp16.onnx_transform == "none"
        implicit = plan_precision("int8-implicit", 10, fp16_fallback=True)
        assert implicit.uses_calibrator and implicit.fp16_flag and not implicit.strongly_typed
    else:
        assert not fp16.fp16_flag and fp16.strongly_typed and fp16.onnx_transform == "fp16-cast"


def test_implicit_refused_on_11_pointing_to_explicit() -> None:
    with pytest.raises(ConfigError, match="int8-explicit"):
        plan_precision("int8-implicit", 11)
    with pytest.raises(ConfigError, match="choose one of"):
        plan_precision("int4", 10)
    with pytest.raises(ConfigError, match=">= 10"):
        plan_precision("fp16", 8)


def test_engine_spec_validation_and_dict() -> None:
    prof = ShapeProfile((1, 1), (8, 64), (32, 128))
    spec = EngineSpec("fp16", prof)
    d = spec.as_dict()
    assert d["precision"] == "fp16" and d["profile"]["opt"] == [8, 64]
    with pytest.raises(ConfigError, match="calibration_shape"):
        EngineSpec("int8-implicit", prof)
    with pytest.raises(ConfigError, match="optimization_level"):
        EngineSpec("fp32", prof, optimization_level=9)
    assert set(PRECISIONS) == {"fp32", "fp16", "int8-implicit", "int8-explicit"}


def test_profile_from_the_calibration_set_suggestion() -> None:
    from workbench.data.shapes import suggest_profile

    lengths = np.array([5, 9, 14, 22, 30, 41])
    prof = ShapeProfile.from_suggestion(suggest_profile(lengths, 128, batch_sizes=(1, 8, 32)))
    assert prof.min[0] == 1 and prof.opt[0] == 8 and prof.max[0] == 32
    assert prof.min[1] <= prof.opt[1] <= prof.max[1] <= 128


def test_implicit_calibration_keeps_a_generator_reusable() -> None:
    from workbench.backends.tensorrt import ImplicitCalibration

    def gen():
        for _ in range(3):
            yield {k: np.ones((2, 4), np.int64) for k in ("input_ids", "attention_mask")}

    calib = ImplicitCalibration(gen(), shape=(2, 8))
    assert len(calib.batches()) == 3 and len(calib.batches()) == 3
