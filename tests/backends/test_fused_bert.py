"""The fused quantized BERT encoder (``kernels.bert``) against the float64 ``QuantLinear``
reference: on the CPU through Triton's interpreter, compiled on a GPU (``gpu``).

The reference is the same model with every encoder Linear in ``simulate=True`` mode (each
quantized input and weight dequantized in float64): the fused kernels must compute that
function, up to float32 rounding that may move an activation across a code boundary.
"""

from __future__ import annotations

import copy
import os

import pytest

from workbench.backends.pytorch.kernels import triton_missing_reason

MISSING = triton_missing_reason()
if MISSING is None:
    import torch

    COMPILED = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"
    if not COMPILED:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernel modules are imported
else:
    COMPILED = False
KEEP_FLOAT = ("bert.pooler.*", "classifier")


@pytest.fixture(
    params=[
        pytest.param("cpu", id="interpreter"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
    ]
)
def dev(request) -> str:
    if MISSING is not None:
        pytest.skip(f"Triton kernels: {MISSING}")
    if (request.param == "cuda") != COMPILED:
        pytest.skip("kernels run compiled only on a CUDA GPU, else through the interpreter")
    return request.param


def tiny_bert(dev: str, kind: str = "hf"):
    """A tiny random HF BERT classifier, or the workbench's MeanPoolClassifier around one."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from workbench.backends.pytorch.model import MeanPoolClassifier

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=3,
        attn_implementation="sdpa",
    )
    if kind == "meanpool":
        model = MeanPoolClassifier(BertModel(cfg, add_pooling_layer=False), 3)
        with torch.no_grad():
            model.head.weight.normal_(0, 1.0)
        return model.eval().to(dev)
    return BertForSequenceClassification(cfg).eval().to(dev)


def logits_of(model, x: dict):
    out = model(**x)
    return (out.logits if hasattr(out, "logits") else out).double()


def feed(dev: str, batch: int = 3, seq: int = 16, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 500, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0  # one padded row
    return {
        "input_ids": ids.to(dev),
        "attention_mask": mask.to(dev),
        "token_type_ids": torch.zeros_like(ids).to(dev),
    }


def amax_of(model, inputs: dict) -> dict[str, float]:
    amax: dict[str, float] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, n=n: amax.__setitem__(n, float(inp[0].abs().amax()))
        )
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]
    with torch.no_grad():
        model(**inputs)
    for h in hooks:
        h.remove()
    return amax


@pytest.mark.parametrize(
    ("precision", "kind"), [("fp8", "hf"), ("int8-static", "hf"), ("int8-static", "meanpool")]
)
def test_fused_encoder_matches_quantlinear_reference(dev: str, precision: str, kind: str) -> None:
    from workbench.backends.pytorch.kernels.bert import KERNELS_LABEL, fuse_bert_encoder
    from workbench.backends.pytorch.lowp import quantize_linears

    fp32 = tiny_bert(dev, kind)
    x = feed(dev)
    amax = amax_of(fp32, x)
    keep = KEEP_FLOAT if kind == "hf" else ("head",)
    ref = quantize_linears(copy.deepcopy(fp32), amax, precision, keep, simulate=True)
    quant = quantize_linears(copy.deepcopy(fp32), amax, precision, keep)
    fused = fuse_bert_encoder(quant)  # float32 activations: the kernels' numerics alone
    assert (fused.encoder if kind == "meanpool" else fused).kernels == KERNELS_LABEL
    with torch.no_grad():
        want, got, base = logits_of(ref, x), logits_of(fused, x), logits_of(fp32, x)
    err = float((got - want).norm() / want.norm())
    assert err < 2e-3, err
    assert torch.equal(got.argmax(1), want.argmax(1))
    # the reference itself is quantized: it differs from FP32 more than the kernels from it
    assert err < float((want - base).norm() / base.norm())
    if dev == "cuda":  # FP16 as the benchmark runs it; its rounding can exceed tiny INT8 error
        with torch.no_grad():
            got16 = logits_of(fused.half(), x)
        assert float((got16 - want).norm() / want.norm()) < 2e-2
        assert torch.equal(got16.argmax(1), want.argmax(1))


def test_fused_encoder_refuses_float_linears() -> None:
    if MISSING is not None:
        pytest.skip(f"Triton kernels: {MISSING}")
    from workbench.backends.pytorch.kernels.bert import fuse_bert_encoder
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="not a static FP8/INT8 QuantLinear"):
        fuse_bert_encoder(tiny_bert("cpu"))
