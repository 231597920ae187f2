"""The CUDA FP8/INT8 builds take the Q/DQ path's table and float-kept layers (checked on CPU)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (extra: torch)")


@pytest.mark.parametrize("precision", ["int8-static", "fp8"])
def test_same_table_and_same_float_layers_as_qdq(tmp_path, precision):
    import torch

    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.backends.onnxruntime.export import export_classifier
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.backends.pytorch.backend import load_module, quantized_module
    from workbench.backends.pytorch.hf import inspect_hf_folder
    from workbench.backends.pytorch.lowp import set_simulate
    from workbench.backends.pytorch.runner import model_input_names
    from workbench.backends.registry import BuildRequest
    from workbench.calibration.qdq import excluded_nodes
    from workbench.calibration.table import calibrate
    from workbench.data.tokenize import TextTokenizer

    folder = make_tiny_hf_classifier(tmp_path / "m", ["neg", "pos"])
    info, tok = inspect_hf_folder(folder), TextTokenizer.from_model_dir(folder)
    module = load_module(folder)
    onnx = export_classifier(module, tok, info.content_key, model_input_names(module)).onnx_path
    texts = [f"the film number {i} was {'good' if i % 2 else 'dull'} and long" for i in range(32)]
    table = calibrate(
        onnx,
        [tok.encode(texts[i : i + 8]) for i in range(0, 32, 8)],
        method="max",
        open_runner=open_ort_runner,
    )
    table.save(tmp_path / "t.json")
    exclude = ("layer.1/output/dense",)
    req = BuildRequest(
        "x", "pytorch", "cpu", precision, False, False, onnx, str(folder), str(tok.path), 128,
        str(tmp_path / "t.json"), "max", "workbench", True, exclude, "",
    )  # fmt: skip
    assert [n.split("/")[-4] for n in excluded_nodes(onnx, exclude)] == ["layer.1"]
    q = quantized_module(load_module(folder), req)
    floats = [n for n, m in q.named_modules() if type(m) is torch.nn.Linear]
    assert floats == ["model.bert.encoder.layer.1.output.dense"]  # exactly the Q/DQ float list
    set_simulate(q, True)
    feed = {k: torch.from_numpy(v) for k, v in tok.encode(texts[:8]).items()}
    with torch.no_grad():
        ref, got = module(**feed), q(**feed)
    assert torch.allclose(ref, got, atol=0.05)  # quantized, close, not identical
    assert not torch.equal(ref, got)
