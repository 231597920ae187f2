"""INT8 audit parsing on a fixture in NVIDIA's documented engine-inspector JSON format.

The fixture (data/engine_info_int8_trt10.json) is hand-written, not TensorRT output; its
sources are listed in data/README.md. Expected counts below are read off it by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.backends.registry import Artifact, get_backend
from workbench.backends.tensorrt.audit import coverage_from_inspector, dtype_of
from workbench.errors import EngineBuildError

FIXTURE = Path(__file__).parent / "data" / "engine_info_int8_trt10.json"


def test_fixture_counts_int8_and_names_the_fallbacks() -> None:
    cov = coverage_from_inspector(FIXTURE.read_text())
    assert (cov.quantized_matmul, cov.float_matmul) == (3, 2)
    assert cov.share == pytest.approx(3 / 5)
    assert "3 of 5 GEMM-like layers run INT8" in cov.detail
    assert "'fp16': 1" in cov.detail and "'fp32': 1" in cov.detail
    assert "/encoder/layer.0/output/dense/MatMul_myl0_11" in cov.detail


def test_trt11_layout_and_a_bare_list_give_the_same_record() -> None:
    data = json.loads(FIXTURE.read_text())
    ten = coverage_from_inspector(json.dumps(data))
    io = [{"Name": n, "IOMode": "Input", "DataType": "Int64"} for n in data.pop("Bindings")]
    for layer in data["Layers"]:  # 11.x splits "Format/Datatype" into two keys
        for t in layer.get("Inputs", []) + layer.get("Outputs", []):
            if "Format/Datatype" in t:
                t["Datatype"], t["Format"] = t.pop("Format/Datatype"), "Row major linear"
    eleven = coverage_from_inspector(json.dumps({**data, "I/O Tensors": io}))
    assert ten == eleven == coverage_from_inspector(json.dumps(data["Layers"]))


def test_all_float_engine_has_zero_share() -> None:
    layer = json.loads(FIXTURE.read_text())["Layers"][4]  # the FP16 GEMM
    cov = coverage_from_inspector(json.dumps({"Layers": [layer]}))
    assert (cov.quantized_matmul, cov.float_matmul, cov.share) == (0, 1, 0.0)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Row major linear FP32 format (kLINEAR)", "fp32"),
        ("Row major linear FP16 format (kLINEAR)", "fp16"),
        ("Thirty-two wide channel vectorized row major Int8 format.", "int8"),
        ("Int8", "int8"),
        ("Half", "fp16"),
        ("Float", "fp32"),
        ("BFloat16", "bf16"),
        ("UInt8", "uint8"),
        ("Int64", "int"),
    ],
)
def test_dtype_of_format_strings(text: str, want: str) -> None:
    assert dtype_of(text) == want


def test_tactic_name_decides_when_inputs_carry_no_type() -> None:
    layer = {
        "Name": "g",
        "LayerType": "gemm",
        "Inputs": [{"Name": "a", "Dimensions": [4, 8]}, {"Name": "b", "Dimensions": [8, 2]}],
        "TacticName": "sm90_xmma_gemm_i8i8_i8i32_f32_tn_n",
    }
    assert coverage_from_inspector(json.dumps({"Layers": [layer]})).quantized_matmul == 1


def test_malformed_or_undetailed_output_raises() -> None:
    with pytest.raises(EngineBuildError, match="not JSON"):
        coverage_from_inspector("{not json")
    with pytest.raises(EngineBuildError, match="no 'Layers'"):
        coverage_from_inspector(json.dumps({"Bindings": []}))
    with pytest.raises(EngineBuildError, match="DETAILED"):
        coverage_from_inspector(json.dumps({"Layers": ["a + b", "c"]}))


def test_registry_audit_reads_the_inspector_file_beside_the_engine(tmp_path: Path) -> None:
    from tests.backends.tensorrt.conftest import request_for

    (tmp_path / "layers.json").write_text(FIXTURE.read_text(), encoding="utf-8")
    art = Artifact(str(tmp_path / "engine.plan"), "0" * 64, "t")
    backend = get_backend("tensorrt")
    cov = backend.int8_audit(request_for("x.onnx", "int8-explicit", tmp_path), art)
    assert cov is not None and cov.quantized_matmul == 3
    assert backend.int8_audit(request_for("x.onnx", "fp16", tmp_path), art) is None
