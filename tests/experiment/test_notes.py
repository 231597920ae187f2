"""Notes the engine adds to build records: the CUDA INT8 vs CPU Q/DQ cross-check."""

from __future__ import annotations

from workbench.experiment.notes import cross_backend_agreement
from workbench.results.records import BuildResult


def _build(name: str, backend: str, device: str) -> BuildResult:
    return BuildResult(name, backend, "int8-static", device, "m", "0" * 64, None, [], 1.0, None,
                       None, [])  # fmt: skip


def test_cuda_int8_gets_its_agreement_with_the_cpu_qdq_model_and_the_gap_explained():
    builds = [
        _build("ort-cuda-int8-static", "onnxruntime", "cuda:H200"),
        _build("ort-int8-static", "onnxruntime", "cpu"),
        _build("torch-cuda-int8-static", "pytorch", "cuda:H200"),
    ]
    preds = {"ort-int8-static": [0, 1] * 10, "torch-cuda-int8-static": [0, 1] * 9 + [1, 1]}
    out = cross_backend_agreement(builds, preds)
    (note,) = out[2].notes
    assert note.startswith("agrees with ort-int8-static (the Q/DQ model")  # the CPU one
    assert "95.00% of 20 test predictions" in note
    assert "attention MatMuls" in note and "FP16" in note
    assert out[0].notes == [] and out[1].notes == []


def test_no_gap_text_when_the_two_backends_agree():
    builds = [_build("ort-int8-static", "onnxruntime", "cpu"), _build("t", "pytorch", "cuda:X")]
    out = cross_backend_agreement(builds, {"ort-int8-static": [1, 0, 1], "t": [1, 0, 1]})
    assert out[1].notes == [
        "agrees with ort-int8-static (the Q/DQ model of the same calibration "
        "table, which TensorRT would build) on 100.00% of 3 test predictions"
    ]
