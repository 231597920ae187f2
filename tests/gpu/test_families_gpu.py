"""Every BERT family's GPU builds: FP16 (weights cast) and FP8 / INT8 Linears from the family's
calibration table, with per-layer compile over the family's layer stack, against FP32 on CPU.

The Linears are found through the export's node names (lowp_map), so each family's module
names must map; the FP32 CPU logits of the same classifier are the oracle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.gpu.cuda import requires_cuda
from tests.tiny_families import FAMILIES, make_family_classifier, shipped_texts

pytestmark = [pytest.mark.gpu, requires_cuda, pytest.mark.filterwarnings("ignore")]
PRECISIONS = ["fp16", "fp8", "int8-static", "int8-dynamic"]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory: pytest.TempPathFactory):
    """(HF info, tokenizer, export path, calibration table, feeds, FP32 CPU logits)."""
    from workbench.backends.onnxruntime.export import export_classifier
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.backends.pytorch.hf import inspect_hf_folder, load_hf_classifier
    from workbench.backends.pytorch.runner import TorchRunner
    from workbench.calibration.table import calibrate
    from workbench.data.tokenize import TextTokenizer

    root = tmp_path_factory.mktemp(request.param)
    info = inspect_hf_folder(make_family_classifier(root / "model", request.param))
    tok = TextTokenizer.from_model_dir(info.path, 64, info.input_names)
    exp = export_classifier(
        load_hf_classifier(info), tok, info.content_key, info.input_names,
        out_dir=root / "onnx", int8_ready=True,
    )  # fmt: skip
    texts, _ = shipped_texts()
    feeds = [tok.encode(texts[i : i + 16], pad_to=64) for i in range(0, 128, 16)]
    table = calibrate(exp.onnx_path, feeds[:4], "max", open_runner=open_ort_runner)
    with TorchRunner(load_hf_classifier(info)) as cpu:
        ref = np.concatenate([cpu.infer(f)["logits"] for f in feeds[4:]])
    return info, exp.onnx_path, table, feeds[4:], ref


@pytest.mark.parametrize("precision", PRECISIONS)
def test_gpu_build_agrees_with_its_reference(family, precision: str) -> None:
    """FP16: against FP32 on the CPU. FP8 / INT8: the CUDA kernels against the same quantized
    model's float64 reference path (simulate=True), so quantization error is not judged here."""
    import torch

    from workbench.backends.pytorch.hf import load_hf_classifier
    from workbench.backends.pytorch.lowp import set_simulate
    from workbench.backends.pytorch.lowp_map import quantize_from_table
    from workbench.backends.pytorch.runner import TorchRunner

    if precision == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 matmuls need compute capability >= 8.9 (Ada/Hopper)")
    info, onnx_path, table, feeds, ref = family
    module = load_hf_classifier(info)
    if precision != "fp16":
        module = quantize_from_table(module.to("cuda"), table, onnx_path, precision)
        with torch.no_grad():
            set_simulate(module, True)
            ref = np.concatenate([_logits(module, f) for f in feeds])
            set_simulate(module, False)
    with TorchRunner(module, f"torch-{precision}", "fp16", "cuda", compile_mode="default") as r:
        assert "per layer" in r.compile_scope  # the family's layer stack was found
        got = np.concatenate([r.infer(f)["logits"] for f in feeds])
    assert np.isfinite(got).all()
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agree >= 0.95, f"{Path(info.path).name} {precision}: {agree}"


def _logits(module, feed) -> np.ndarray:
    import torch

    tensors = {k: torch.from_numpy(v).to("cuda") for k, v in feed.items()}
    return module.float()(**tensors).float().cpu().numpy()
