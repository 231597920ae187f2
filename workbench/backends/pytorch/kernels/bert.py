"""A quantized BERT encoder run through the workbench's fused Triton kernels.

``fuse_bert_encoder`` takes a Hugging Face BERT whose encoder Linears are static FP8 or
INT8 ``QuantLinear``s (``lowp.quantize_linears``) and returns a module whose layers run
with no separate quantize pass between them: Q/K/V as one GEMM (dequant + bias epilogue,
FP16 out), SDPA in FP16, a quantize of the attention output, the output projection (FP16
out), residual + LayerNorm → FP16 copy + quantized FFN input in one kernel, the first FFN
GEMM with a bias + GELU + requantize epilogue (writes INT8/FP8 directly), the second FFN
GEMM, and residual + LayerNorm → quantized input of the next layer's Q/K/V GEMM.

Example::

    quantize_linears(model, amax, "fp8", exclude=["bert.pooler.*", "classifier"])
    fused = fuse_bert_encoder(model.half().cuda())     # .logits like the HF model
    logits = fused(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from workbench.backends.pytorch.kernels.elementwise import layernorm_quant, quantize
from workbench.backends.pytorch.kernels.gemm import scaled_gemm
from workbench.backends.pytorch.kernels.spec import Epilogue, QuantSpec
from workbench.backends.pytorch.lowp import QuantLinear
from workbench.errors import ConfigError

KERNELS_LABEL = "PyTorch + workbench Triton kernels"


def _qlin(mod: nn.Module, what: str) -> QuantLinear:
    if not isinstance(mod, QuantLinear) or mod.precision not in ("fp8", "int8-static"):
        raise ConfigError(
            f"{what} is not a static FP8/INT8 QuantLinear; quantize the encoder Linears with "
            "quantize_linears(..., 'fp8' or 'int8-static') before fusing"
        )
    return mod


def _f32(buf: torch.Tensor) -> torch.Tensor:
    return buf.view(torch.float32)


class _Gemm(nn.Module):
    """One quantized GEMM: weight [N, K], per-channel scales, input scale, bias (FP16)."""

    def __init__(self, lins: list[QuantLinear], fmt: str) -> None:
        super().__init__()
        self.fp8 = fmt == "fp8"
        # integer storage (FP8 as uint8, scales as int32 bits) keeps model.to(dtype) exact
        self.register_buffer("w_bits", torch.cat([lin.weight_q for lin in lins]))
        self.register_buffer("w_scale_bits", torch.cat([lin.w_scale for lin in lins]).clone())
        # Q, K and V read one tensor, so their calibrated input ranges are equal; take the max
        s_a = torch.stack([_f32(lin.a_scale).reshape(()) for lin in lins]).amax().reshape(1)
        self.register_buffer("a_scale_bits", s_a.view(torch.int32).clone())
        self.register_buffer("bias", torch.cat([lin.bias for lin in lins]).clone())

    @property
    def a_scale(self) -> torch.Tensor:
        """The input's static scale, a one-element float32 tensor."""
        return _f32(self.a_scale_bits)

    def forward(self, xq: torch.Tensor, ep: Epilogue) -> torch.Tensor:
        w = self.w_bits.view(torch.float8_e4m3fn) if self.fp8 else self.w_bits
        return scaled_gemm(xq, w, self.a_scale, _f32(self.w_scale_bits), ep)


class FusedQuantBertLayer(nn.Module):
    """One BERT layer on the fused kernels; ``forward(h, hq, mask) -> (h', hq')``."""

    def __init__(self, layer: nn.Module, fmt: Literal["int8", "fp8"]) -> None:
        super().__init__()
        att, sa = layer.attention, layer.attention.self
        self.fmt = fmt
        self.heads, self.head_dim = sa.num_attention_heads, sa.attention_head_size
        self.qkv = _Gemm(
            [_qlin(sa.query, "query"), _qlin(sa.key, "key"), _qlin(sa.value, "value")], fmt
        )
        self.out = _Gemm([_qlin(att.output.dense, "attention.output.dense")], fmt)
        self.ffn1 = _Gemm([_qlin(layer.intermediate.dense, "intermediate.dense")], fmt)
        self.ffn2 = _Gemm([_qlin(layer.output.dense, "output.dense")], fmt)
        self.ln1, self.ln2 = att.output.LayerNorm, layer.output.LayerNorm

    def spec(self, gemm: _Gemm) -> QuantSpec:
        """The quantized format of ``gemm``'s input."""
        return QuantSpec(self.fmt, gemm.a_scale)

    def forward(
        self, h: torch.Tensor, hq: torch.Tensor, mask: torch.Tensor, next_spec: QuantSpec
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, seq = mask.shape[0], h.shape[0] // mask.shape[0]
        qkv = self.qkv(hq, Epilogue(bias=self.qkv.bias, out_dtype=h.dtype))
        q, k, v = qkv.view(bsz, seq, 3, self.heads, self.head_dim).unbind(2)
        ctx = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        )
        ctx = ctx.transpose(1, 2).reshape(bsz * seq, self.heads * self.head_dim)
        ao = self.out(
            quantize(ctx, self.spec(self.out)), Epilogue(bias=self.out.bias, out_dtype=h.dtype)
        )
        iq, h1 = layernorm_quant(
            ao, self.ln1.weight, self.ln1.bias, self.spec(self.ffn1), residual=h, eps=self.ln1.eps
        )
        gq = self.ffn1(iq, Epilogue(bias=self.ffn1.bias, gelu=True, requant=self.spec(self.ffn2)))
        o = self.ffn2(gq, Epilogue(bias=self.ffn2.bias, out_dtype=h.dtype))
        nq, h2 = layernorm_quant(
            o, self.ln2.weight, self.ln2.bias, next_spec, residual=h1, eps=self.ln2.eps
        )
        return cast(torch.Tensor, h2), nq


class FusedQuantEncoder(nn.Module):
    """A Hugging Face ``BertModel`` whose layers run on ``FusedQuantBertLayer``s.

    ``forward`` returns ``last_hidden_state`` (and ``pooler_output`` where the model has a
    pooler), so it can stand in for the encoder of the workbench's ``MeanPoolClassifier``.
    """

    kernels = KERNELS_LABEL

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        layers = bert.encoder.layer
        first = _qlin(layers[0].attention.self.query, "query")
        self.fmt: Literal["int8", "fp8"] = "fp8" if first.precision == "fp8" else "int8"
        self.config = bert.config
        self.embeddings, self.pooler = bert.embeddings, getattr(bert, "pooler", None)
        self.layers = nn.ModuleList(FusedQuantBertLayer(layer, self.fmt) for layer in layers)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> Any:
        h = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        bsz, seq, hidden = h.shape
        h = h.reshape(bsz * seq, hidden)
        mask = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        hq = quantize(h, self.layers[0].spec(self.layers[0].qkv))
        for i, layer in enumerate(self.layers):
            nxt = self.layers[min(i + 1, len(self.layers) - 1)]
            h, hq = layer(h, hq, mask, nxt.spec(nxt.qkv))
        h = h.reshape(bsz, seq, hidden)
        pooled = self.pooler(h) if self.pooler is not None else None
        return SimpleNamespace(last_hidden_state=h, pooler_output=pooled)


class FusedQuantBert(nn.Module):
    """A Hugging Face BERT classifier whose encoder is a ``FusedQuantEncoder``.

    Pooler and classifier are the model's own modules (FP16); ``forward`` returns an
    object with ``.logits`` as the Hugging Face model does.
    """

    kernels = KERNELS_LABEL

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.bert = FusedQuantEncoder(model.bert)
        self.classifier = model.classifier

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> Any:
        out = self.bert(input_ids, attention_mask, token_type_ids)
        return SimpleNamespace(logits=self.classifier(out.pooler_output))


def fuse_bert_encoder(model: nn.Module) -> nn.Module:
    """``model`` with its quantized BERT encoder on the fused kernels.

    A ``BertForSequenceClassification`` becomes a ``FusedQuantBert``; a module with an
    ``encoder`` attribute (the workbench's ``MeanPoolClassifier``) gets its encoder
    replaced in place by a ``FusedQuantEncoder`` and is returned.
    """
    if hasattr(model, "bert") and hasattr(model, "classifier"):
        return FusedQuantBert(model)
    if hasattr(getattr(model, "encoder", None), "embeddings"):
        model.encoder = FusedQuantEncoder(model.encoder)
        return model
    raise ConfigError(
        "fuse_bert_encoder takes a BertForSequenceClassification or a module whose .encoder "
        "is a BertModel (MeanPoolClassifier)"
    )
