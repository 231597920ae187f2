"""Tiny random classifiers of every BERT family, each with a tokenizer of the family's kind.

``make_family_classifier(out, family)`` writes a ``save_pretrained`` folder the way a user's
fine-tune looks: a 2-layer, hidden-64 ``*ForSequenceClassification`` with labels, the
family's fast tokenizer (WordPiece from the shipped MiniLM vocabulary, or a byte-level BPE /
Unigram model trained here with ``tokenizers`` on the shipped Rotten Tomatoes texts) and a
few AdamW steps on those texts so its predictions are not constant.
Run directly to write one: ``python tests/tiny_families.py OUT_DIR FAMILY``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

LABELS = ["rotten", "fresh"]
HIDDEN, LAYERS, HEADS = 64, 2, 2
BPE_VOCAB = 1000
TRAIN_STEPS, TRAIN_BATCH, TRAIN_ROWS = 8, 16, 480


@dataclass(frozen=True)
class Family:
    """How to make one family: its config class, extra config keys and tokenizer kind."""

    config: str  # transformers config class
    tokenizer: str  # transformers fast tokenizer class
    kind: str  # "wordpiece" | "bpe" | "unigram"
    specials: tuple[str, str, str, str, str]  # cls, sep, pad, unk, mask
    extra: tuple[tuple[str, object], ...] = ()


_BERT = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
_ROBERTA = ("<s>", "</s>", "<pad>", "<unk>", "<mask>")
FAMILIES: dict[str, Family] = {
    "bert": Family("BertConfig", "BertTokenizerFast", "wordpiece", _BERT),
    "distilbert": Family("DistilBertConfig", "DistilBertTokenizerFast", "wordpiece", _BERT),
    "roberta": Family("RobertaConfig", "RobertaTokenizerFast", "bpe", _ROBERTA),
    "xlm-roberta": Family("XLMRobertaConfig", "XLMRobertaTokenizerFast", "unigram", _ROBERTA),
    "albert": Family(
        "AlbertConfig",
        "AlbertTokenizerFast",
        "unigram",
        ("[CLS]", "[SEP]", "<pad>", "<unk>", "[MASK]"),
        (("embedding_size", 32),),
    ),
    "electra": Family(
        "ElectraConfig", "ElectraTokenizerFast", "wordpiece", _BERT, (("embedding_size", 32),)
    ),
    "deberta-v2": Family(  # a DeBERTa-v3 config: relative attention, no token types
        "DebertaV2Config",
        "DebertaV2TokenizerFast",
        "unigram",
        _BERT,
        (
            ("relative_attention", True),
            ("position_biased_input", False),
            ("pos_att_type", ["p2c", "c2p"]),
            ("max_relative_positions", -1),
            ("position_buckets", 64),
            ("norm_rel_ebd", "layer_norm"),
            ("share_att_key", True),
            ("type_vocab_size", 0),
        ),
    ),
    "mpnet": Family("MPNetConfig", "MPNetTokenizerFast", "wordpiece", _BERT),
    "modernbert": Family(
        "ModernBertConfig",
        "PreTrainedTokenizerFast",
        "bpe",
        _BERT,
        (("global_attn_every_n_layers", 2), ("local_attention", 16)),
    ),
    "camembert": Family("CamembertConfig", "CamembertTokenizerFast", "unigram", _ROBERTA),
}


def shipped_texts(n: int = TRAIN_ROWS, seed: int = 5) -> tuple[list[str], list[int]]:
    """Rotten Tomatoes rows (text, label) from the shipped data."""
    from workbench.data.datasets import load_rotten_tomatoes

    ds = load_rotten_tomatoes().dataset.shuffle(seed=seed).select(range(n))
    return list(ds["text"]), list(ds["label"])


def _backend_tokenizer(fam: Family, texts: list[str]):
    """A ``tokenizers.Tokenizer`` of the family's kind with its single/pair template."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.implementations import SentencePieceUnigramTokenizer
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    cls, sep, pad, unk, mask = fam.specials
    if fam.kind == "wordpiece":
        from tests.tiny_bert import default_tokenizer_dir

        return Tokenizer.from_file(str(default_tokenizer_dir() / "tokenizer.json"))
    specials = [cls, pad, sep, unk, mask]
    if fam.kind == "bpe":
        tok = Tokenizer(BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = BpeTrainer(
            vocab_size=BPE_VOCAB,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts, trainer)
    else:
        sp = SentencePieceUnigramTokenizer()
        sp.train_from_iterator(texts, vocab_size=BPE_VOCAB, special_tokens=specials, unk_token=unk)
        tok = sp._tokenizer
    ids = {t: tok.token_to_id(t) for t in (cls, sep)}
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=list(ids.items()),
    )
    return tok


def make_tokenizer(out: Path, family: str, texts: list[str]):
    """Save the family's fast tokenizer into ``out``; returns it."""
    import transformers

    fam = FAMILIES[family]
    cls, sep, pad, unk, mask = fam.specials
    kwargs: dict[str, object] = {}
    if fam.tokenizer == "PreTrainedTokenizerFast":
        kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    tok = getattr(transformers, fam.tokenizer)(
        tokenizer_object=_backend_tokenizer(fam, texts),
        cls_token=cls,
        sep_token=sep,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
        bos_token=cls,
        eos_token=sep,
        **kwargs,
    )
    tok.save_pretrained(out)
    # reloaded, the family's class rebuilds its own pipeline (lower-casing, prefix space ...):
    # saved again, tokenizer.json is what a user's save_pretrained folder holds
    tok = transformers.AutoTokenizer.from_pretrained(out)
    tok.save_pretrained(out)
    return tok


def _config(family: str, vocab_size: int, pad_id: int, **extra: object):
    import transformers

    fam = FAMILIES[family]
    sizes: dict[str, object] = {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": HIDDEN * 2,
        "max_position_embeddings": 514,
        "pad_token_id": pad_id,
    }
    if family == "distilbert":
        sizes = {
            "vocab_size": vocab_size,
            "dim": HIDDEN,
            "n_layers": LAYERS,
            "n_heads": HEADS,
            "hidden_dim": HIDDEN * 2,
            "max_position_embeddings": 512,
            "pad_token_id": pad_id,
        }
    return getattr(transformers, fam.config)(**sizes, **dict(fam.extra), **extra)


def make_family_classifier(out: Path, family: str, seed: int = 0, steps: int = TRAIN_STEPS) -> Path:
    """Write a trained tiny ``family`` classifier folder (labels ``LABELS``) with its tokenizer."""
    import torch
    import transformers

    texts, labels = shipped_texts()
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(out, family, texts)
    torch.manual_seed(seed)
    specials = {f"{n}_token_id": getattr(tok, f"{n}_token_id") for n in ("bos", "eos", "cls")}
    specials["sep_token_id"] = tok.sep_token_id
    cfg = _config(
        family,
        len(tok),
        int(tok.pad_token_id),
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
        **specials,  # the family's special ids, in this vocabulary
    )
    model = transformers.AutoModelForSequenceClassification.from_config(cfg)
    _train(model, tok, texts, labels, steps)
    _fit_head(model, tok, texts)
    model.eval().save_pretrained(out)
    return out


def _fit_head(model, tok, texts: list[str]) -> None:
    """Point the output layer along the top principal direction of its input, centred at the
    median text, margins ~3 sd wide: a few steps leave a tiny model predicting one class by
    1e-4 margins; fitted, its predictions follow the text, far above float noise."""
    import torch

    n = model.config.num_labels
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = [m for m in linears if m.out_features == n][-1]
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    model.eval()
    with torch.no_grad():
        model(**tok(texts[:256], truncation=True, max_length=64, padding=True, return_tensors="pt"))
        hook.remove()
        x = seen[0].double()
        mu = x.mean(dim=0)
        w = torch.linalg.svd(x - mu, full_matrices=False)[2][0]
        proj = (x - mu) @ w
        k = 3.0 / float(proj.std())
        c = float(w @ mu + proj.median())
        head.weight.copy_(torch.stack([-k * w / 2, k * w / 2]).to(head.weight.dtype))
        head.bias.copy_(torch.tensor([k * c / 2, -k * c / 2], dtype=head.bias.dtype))


def _train(model, tok, texts: list[str], labels: list[int], steps: int) -> None:
    """A few AdamW steps on real texts: enough for predictions that depend on the text."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        lo = (step * TRAIN_BATCH) % (len(texts) - TRAIN_BATCH)
        batch = tok(texts[lo : lo + TRAIN_BATCH], truncation=True, max_length=32,
                    padding=True, return_tensors="pt")  # fmt: skip
        y = torch.tensor(labels[lo : lo + TRAIN_BATCH])
        loss = model(**batch, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    print(make_family_classifier(Path(sys.argv[1]), sys.argv[2]))
