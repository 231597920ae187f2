"""What decides a TensorRT build, checked without TensorRT: plans, profiles, Polygraphy config."""

from __future__ import annotations

import pytest

from workbench.backends.tensorrt.build import PLANS, PRECISIONS, plan_for, precisions_on
from workbench.backends.tensorrt.profiles import ShapeProfile, polygraphy_profile
from workbench.errors import ConfigError

BERT = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize("major", [10, 11])
def test_float_and_explicit_builds_are_strongly_typed_on_both_majors(major: int) -> None:
    for precision, source in (("fp32", "fp32"), ("fp16", "fp16"), ("int8-explicit", "qdq")):
        plan = plan_for(precision, major)
        assert plan.source == source and plan.strongly_typed and not plan.calibrator
    assert plan_for("int8-explicit", major).needs == "table"
    assert plan_for("fp16", major).needs == ""


def test_implicit_int8_is_tensorrt_10_only_and_points_to_explicit() -> None:
    implicit = plan_for("int8-implicit", 10)
    assert implicit.calibrator and not implicit.strongly_typed and implicit.needs == "samples"
    assert precisions_on(10) == PRECISIONS
    assert precisions_on(11) == ("fp32", "fp16", "int8-explicit")
    with pytest.raises(ConfigError, match=r"removed implicit INT8.*int8-explicit"):
        plan_for("int8-implicit", 11)
    with pytest.raises(ConfigError, match="choose one of"):
        plan_for("int4", 10)
    with pytest.raises(ConfigError, match=">= 10"):
        plan_for("fp16", 8)


def test_int8_flags_decide_which_builds_are_audited() -> None:
    assert [p for p, plan in PLANS.items() if plan.int8] == ["int8-implicit", "int8-explicit"]


def test_registry_lists_the_precisions_on_cuda_only() -> None:
    from workbench.backends.registry import check_supported, get_backend

    assert get_backend("tensorrt").capabilities.builds("cuda") == PRECISIONS
    with pytest.raises(ConfigError, match="tensorrt on cpu builds nothing"):
        check_supported("tensorrt", "cpu", "fp16")


def test_shape_profile_spec_and_validation() -> None:
    p = ShapeProfile.for_length(128)
    assert (p.min, p.opt, p.max) == ((1, 1), (32, 128), (64, 128))
    assert ShapeProfile.fixed((16, 48)).as_dict() == {
        "min": [16, 48], "opt": [16, 48], "max": [16, 48],
    }  # fmt: skip
    with pytest.raises(ConfigError, match="sequence sizes must satisfy"):
        ShapeProfile((1, 1), (8, 64), (8, 32))
    with pytest.raises(ConfigError, match="batch sizes must satisfy"):
        ShapeProfile((0, 1), (8, 64), (8, 64))


def test_polygraphy_profile_gives_each_model_input_our_shapes() -> None:
    from polygraphy.backend.trt import Profile

    spec = ShapeProfile.for_length(64)
    prof = polygraphy_profile(spec, BERT[:2])  # DistilBERT/RoBERTa: no token_type_ids
    assert isinstance(prof, Profile) and list(prof) == BERT[:2]
    for name in BERT[:2]:
        assert tuple(prof[name]) == ((1, 1), (32, 64), (64, 64))
    assert "token_type_ids" not in polygraphy_profile(spec, BERT[:2])
    assert list(polygraphy_profile(spec, BERT)) == BERT


def test_polygraphy_config_takes_our_profiles_without_tensorrt() -> None:
    """CreateConfig is a lazy loader: constructing it needs no TensorRT (calling it does)."""
    from polygraphy.backend.trt import CreateConfig, NetworkFromOnnxPath

    run, calib = ShapeProfile.for_length(64), ShapeProfile.fixed((8, 40))
    profiles = [polygraphy_profile(run, BERT), polygraphy_profile(calib, BERT)]
    config = CreateConfig(int8=True, profiles=profiles)
    assert config.profiles[-1]["input_ids"].opt == (8, 40)  # Polygraphy calibrates at the last
    assert config.int8 and not config.fp16 and not config.tf32
    assert NetworkFromOnnxPath("m.onnx", strongly_typed=True).strongly_typed
