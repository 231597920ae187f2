"""INT8 audit parsing on a fixture in NVIDIA's documented engine-inspector JSON format.

The fixture (data/engine_info_int8_trt10.json) is hand-written, not TensorRT output; its
sources are listed in data/README.md. Expected numbers below are recomputed by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workbench.backends.tensorrt.audit import (
    Int8Audit,
    dtype_of,
    gemm_flops,
    parse_engine_information,
)
from workbench.errors import EngineBuildError
from workbench.results.records import Int8Coverage
from workbench.results.serde import from_dict, to_dict

FIXTURE = Path(__file__).parent / "data" / "engine_info_int8_trt10.json"

CONV = 2 * (16 * 256 * 14 * 14) * (131072 // 256)  # 2 * out elems * (Cin*k*k/groups)
QUERY = 2 * (8 * 64 * 384) * 384
FFN_IN = 2 * (8 * 64 * 1536) * 384
FFN_OUT = 2 * (8 * 64 * 384) * 1536  # the FP16 fallback


def test_fixture_counts_layers_precisions_and_flops() -> None:
    audit = parse_engine_information(FIXTURE.read_text())
    assert audit.detailed
    assert audit.n_layers == 7 and audit.n_gemm == 5 and audit.reformat_layers == 1
    assert audit.gemm_by_precision == {"int8": 3, "fp16": 1, "fp32": 1}
    assert audit.gemm_flops_by_precision["int8"] == pytest.approx(CONV + QUERY + FFN_IN)
    assert audit.gemm_flops_by_precision["fp16"] == pytest.approx(FFN_OUT)
    assert audit.flops_unknown == 1  # the classifier's dims are dynamic (-1)
    want = (CONV + QUERY + FFN_IN) / (CONV + QUERY + FFN_IN + FFN_OUT)
    assert audit.int8_flops_share == pytest.approx(want)
    assert audit.int8_layer_share == pytest.approx(3 / 5)
    assert audit.fallback == [
        "/encoder/layer.0/output/dense/MatMul_myl0_11",
        "/classifier/MatMul_myl0_20",
    ]
    assert any("silent fallback" in w for w in audit.warnings)


def test_coverage_record_and_round_trip() -> None:
    audit = parse_engine_information(FIXTURE.read_text())
    cov = audit.to_coverage()
    assert isinstance(cov, Int8Coverage)
    assert (cov.quantized_matmul, cov.float_matmul) == (3, 2)
    assert cov.share == pytest.approx(audit.int8_flops_share)
    assert "3/5 GEMM layers INT8" in cov.detail and "GEMM FLOPs" in cov.detail
    back = from_dict(Int8Audit, json.loads(json.dumps(to_dict(audit))))
    assert back == audit


def test_trt11_top_level_and_bare_lists_parse_the_same() -> None:
    data = json.loads(FIXTURE.read_text())
    ten = parse_engine_information(json.dumps(data))
    io = [{"Name": n, "IOMode": "Input", "DataType": "Int64"} for n in data.pop("Bindings")]
    eleven = parse_engine_information(json.dumps({**data, "I/O Tensors": io}))
    bare = parse_engine_information(json.dumps(data["Layers"]))
    assert ten == eleven == bare
    one = parse_engine_information(json.dumps(data["Layers"][2]))
    assert one.n_gemm == 1 and one.gemm_by_precision == {"int8": 1}


def test_layer_names_only_verbosity_is_flagged() -> None:
    audit = parse_engine_information(json.dumps({"Layers": ["a + b", "c"], "Bindings": ["x"]}))
    assert not audit.detailed and audit.n_layers == 2 and audit.n_gemm == 0
    assert math.isnan(audit.int8_flops_share)
    assert any("DETAILED" in w for w in audit.warnings)


def test_all_float_engine_warns_no_int8() -> None:
    layer = json.loads(FIXTURE.read_text())["Layers"][4]  # the FP16 GEMM
    audit = parse_engine_information(json.dumps({"Layers": [layer]}))
    assert audit.gemm_by_precision == {"fp16": 1}
    assert audit.to_coverage().share == 0.0
    assert any("no GEMM layer runs in INT8" in w for w in audit.warnings)


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
        ("UInt8", "unknown"),
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
        "Outputs": [{"Name": "c", "Dimensions": [4, 2]}],
        "TacticName": "sm90_xmma_gemm_i8i8_i8i32_f32_tn_n",
    }
    audit = parse_engine_information(json.dumps({"Layers": [layer]}))
    assert audit.gemm_by_precision == {"int8": 1}
    assert gemm_flops(layer) == 2 * 4 * 2 * 8


def test_malformed_output_raises() -> None:
    with pytest.raises(EngineBuildError, match="not JSON"):
        parse_engine_information("{not json")
    with pytest.raises(EngineBuildError, match="no 'Layers'"):
        parse_engine_information(json.dumps({"Bindings": []}))
