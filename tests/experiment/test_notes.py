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


def _timed(name: str, precision: str, p50_ms: float, notes: list[str]) -> BuildResult:
    from tests.run_fixtures import latency_result

    lat = [latency_result(1, 128, p50_ms, seed=0)]
    return BuildResult(name, "onnxruntime", precision, "cpu", "m", "0" * 64, None, lat, 1.0,
                       None, None, notes)  # fmt: skip


def test_per_channel_hint_follows_the_artifact_not_the_note_text():
    from workbench.experiment.notes import annotate

    builds = [
        _timed("ort-fp32", "fp32", 1.0, ["FP32 ONNX"]),
        _timed("a", "int8-static", 1.2, ["static Q/DQ, per-channel weights"]),
        _timed("b", "int8-static", 1.2, ["static Q/DQ, weights said nowhere in this text"]),
        _timed("c", "int8-dynamic", 1.2, ["dynamic"]),
    ]
    weights = {"a": "", "b": "per-channel", "c": "per-channel"}
    out = {b.name: b.notes for b in annotate(builds, (1, 128), weights)}
    assert out["ort-fp32"] == ["FP32 ONNX"]
    for name in "abc":  # every INT8 build slower than ort-fp32 is told so
        assert any("INT8 does not pay off here" in n for n in out[name])
    hint = [n for name in "abc" for n in out[name] if "per-channel weight scales" in n]
    assert len(hint) == 1 and hint[0] in out["b"]  # static ranges with per-channel scales only
