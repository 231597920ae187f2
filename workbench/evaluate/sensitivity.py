"""Per-layer INT8 sensitivity: which MatMul/Gemm hurts the task when quantized, and why.

For each quantizable node group (one MatMul/Gemm, named by ONNX node and Hugging Face
module path) two Q/DQ models are scored on a search split: quantize-only-this and
everything-but-this (agreement with FP32, accuracy, probability KL). Cheap proxies (SQNR
and MSE of the layer's output with fake-quantized inputs, from one FP32 pass) come with
their Spearman correlation to the task metric, so users learn whether the proxy suffices.
Layer results are cached one by one under a content hash: an interrupted run resumes.

Example::

    res = layer_sensitivity("model.onnx", table, search_feeds, search_labels,
                            progress=lambda done, total: bar.update(done))
    res.ranking[:3]  # ONNX node names, most harmful first
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.backends.pytorch.hf import HF_WRAPPER
from workbench.backends.pytorch.lowp_map import scope_parts
from workbench.calibration.graph import QUANTIZED_OPS, load_onnx
from workbench.calibration.qdq import write_qdq_model
from workbench.calibration.table import CalibrationTable
from workbench.errors import DataError
from workbench.evaluate.fidelity import kl_divergence, max_abs_dp
from workbench.evaluate.scorer import eval_device, model_logits, score_feeds
from workbench.evaluate.sensitivity_proxies import layer_proxies, tapped_runner
from workbench.fileio import cache_root, sha256_file, sha256_json
from workbench.results.records import SCHEMA_VERSION, load_record, save_record
from workbench.results.sensitivity import LayerSensitivity, NodeGroup, Scores, SensitivityResult

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
Progress = Callable[[int, int], None]
SENSITIVITY_VERSION = 1
RESULT_FILE = "sensitivity.json"
_LAYER_RE = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
_LIST_ITEM_RE = re.compile(r"\.\d+\.")  # a module inside an nn.ModuleList


@dataclass(frozen=True)
class SensitivitySpec:
    """How to measure: weight granularity, proxy sample count, threads, cache use."""

    per_channel: bool = True
    proxy_samples: int = 64
    reference_seq_len: int = 128
    threads: int = 0
    use_cache: bool = True


def module_path(onnx_node: str) -> str:
    """Hugging Face module path from a TorchScript node name (drops the wrapper attribute).

    ``/encoder/encoder/layer.3/output/dense/MatMul`` -> ``encoder.layer.3.output.dense``;
    activation-only MatMuls keep their op suffix (``encoder.layer.0.attention.self.MatMul_1``);
    a user's HF classifier gives its ``*ForSequenceClassification`` module names
    (``/inner/model/roberta/encoder/layer.1/...`` -> ``roberta.encoder.layer.1...``).
    """
    parts, _ = scope_parts(onnx_node)  # drops the exporter's wrapper and call suffixes
    if len(parts) > 2 and parts[0] == HF_WRAPPER:  # a user's HF classifier inside our wrapper
        parts = parts[1:]  # -> its own module names: distilbert.transformer.layer.0.ffn.lin1
    elif len(parts) > 2 and parts[1] in ("encoder", "embeddings", "pooler"):
        parts = parts[1:]  # the workbench wrapper holds the Hugging Face model as `encoder`
    if parts and parts[-1] in QUANTIZED_OPS and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def node_groups(fp32_onnx: str | Path, seq_len: int = 128) -> list[NodeGroup]:
    """Every MatMul/Gemm of the model as a group, in graph order, with its MACs at ``seq_len``."""
    model = load_onnx(fp32_onnx)
    macs = _macs(fp32_onnx, model, seq_len)
    out = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        path = module_path(node.name)
        m = _LAYER_RE.search(path)
        layer = int(m.group(1)) if m else _shared_layer_call(node.name, path)
        sub = path[m.end() :] if m else path.rsplit(".", 1)[0] if "." in path else path
        out.append(NodeGroup(node.name, path, layer, sub, node.op_type, macs.get(node.name, 0)))
    if not out:
        raise DataError(f"{fp32_onnx} has no MatMul/Gemm node; nothing to quantize")
    return out


def _shared_layer_call(onnx_node: str, path: str) -> int:
    """Layer index of a node in a stack of one shared layer (ALBERT: ``albert_layers.0`` run
    N times): the exporter's call number of its scope; -1 outside an indexed module list."""
    if not _LIST_ITEM_RE.search(path):
        return -1
    return scope_parts(onnx_node)[1]


def _macs(fp32_onnx: str | Path, model, seq_len: int) -> dict[str, int]:
    """MACs per MatMul/Gemm from the real shapes of one batch-1 run."""
    inits = {i.name: tuple(int(d) for d in i.dims) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    names = sorted({t for n in nodes for t in (n.input[0], n.output[0]) if t not in inits})
    shapes = {**_probe_shapes(fp32_onnx, names, seq_len), **inits}
    out = {}
    for n in nodes:
        a, y = shapes.get(n.input[0]), shapes.get(n.output[0])
        if not a or not y:
            continue
        trans_a = any(at.name == "transA" and at.i for at in n.attribute)
        k = a[0] if n.op_type == "Gemm" and trans_a else a[-1]
        out[n.name] = int(np.prod(y)) * int(k)
    return out


def _probe_shapes(fp32_onnx, names: list[str], seq_len: int) -> dict[str, tuple[int, ...]]:
    with tapped_runner(fp32_onnx, names, 0) as tap:
        feed = {s.name: np.ones((1, seq_len), dtype=np.int64) for s in tap.input_specs}
        (out,) = score_feeds(tap, [feed], names)
        return {n: tuple(int(d) for d in v.shape) for n, v in out.items()}


def exclude_all_but(groups: Sequence[NodeGroup], keep: str) -> list[str]:
    """``write_qdq_model`` exclude patterns that leave only ``keep`` quantized."""
    return [exact_pattern(g.onnx_node) for g in groups if g.onnx_node != keep]


def exact_pattern(onnx_node: str) -> str:
    """A regular expression matching exactly one node name (an ``exclude`` entry)."""
    return f"^{re.escape(onnx_node)}$"


def score_logits(logits: np.ndarray, fp32_logits: np.ndarray, labels: np.ndarray) -> Scores:
    """Accuracy, agreement and probability KL of ``logits`` against FP32 on one split."""
    pred, ref = logits.argmax(axis=1), fp32_logits.argmax(axis=1)
    return Scores(
        accuracy=float(np.mean(pred == labels)),
        agreement=float(np.mean(pred == ref)),
        kl_mean=float(kl_divergence(fp32_logits, logits).mean()),
        max_abs_dp=float(max_abs_dp(fp32_logits, logits).max()),
    )


def _cache_dir(fp32_onnx, table: CalibrationTable, feeds, labels, spec) -> Path:
    import onnxruntime

    from workbench.backends.base import feeds_sha256

    key = sha256_json(
        {
            "model": sha256_file(fp32_onnx),
            "amax": sha256_json(table.amax),
            "method": table.method,
            "feeds": feeds_sha256(feeds),
            "labels": sha256_json(np.asarray(labels, dtype=np.int64).tolist()),
            "per_channel": spec.per_channel,
            "proxy_samples": spec.proxy_samples,
            "seq": spec.reference_seq_len,
            "ort": onnxruntime.__version__,
            "device": eval_device(),
            "v": SENSITIVITY_VERSION,
        }
    )[:16]
    return cache_root() / "sensitivity" / key


@dataclass(frozen=True)
class _Split:
    """The search split as scored: feeds, labels and the FP32 logits on them."""

    feeds: Sequence[Feed]
    labels: np.ndarray
    fp32: np.ndarray


def iter_sensitivity(
    fp32_onnx: str | Path,
    table: CalibrationTable,
    feeds: Sequence[Feed],
    labels: Sequence[int] | np.ndarray,
    spec: SensitivitySpec = SensitivitySpec(),
) -> Iterator[tuple[int, int, LayerSensitivity]]:
    """Yield ``(done, total, entry)`` group by group; cached entries come back without work."""
    y = _check_inputs(feeds, labels)
    groups = node_groups(fp32_onnx, spec.reference_seq_len)
    cdir = _cache_dir(fp32_onnx, table, feeds, y, spec)
    split = _Split(feeds, y, model_logits(fp32_onnx, feeds, spec.threads))
    proxies: dict[str, tuple[float, float]] | None = None
    for i, group in enumerate(groups):
        part = cdir / f"layer-{i:03d}.json"
        if spec.use_cache and part.is_file():
            yield i + 1, len(groups), load_record(LayerSensitivity, part)
            continue
        if proxies is None:
            proxies = layer_proxies(fp32_onnx, table, feeds, groups, spec)
        only = _score_build(fp32_onnx, table, exclude_all_but(groups, group.onnx_node), split, spec)
        rest = _score_build(fp32_onnx, table, [exact_pattern(group.onnx_node)], split, spec)
        sq, mse = proxies.get(group.onnx_node, (float("nan"), float("nan")))
        entry = LayerSensitivity(group, only, rest, sq, mse)
        if spec.use_cache:
            save_record(entry, part)
        yield i + 1, len(groups), entry


def _check_inputs(feeds: Sequence[Feed], labels: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64)
    n = sum(int(next(iter(f.values())).shape[0]) for f in feeds) if feeds else 0
    if n == 0 or y.size != n:
        raise DataError(
            f"the search split has {n} samples and {y.size} labels; pass tokenized feeds and "
            "one label per sample (a non-empty held-out split)"
        )
    return y


def _score_build(fp32_onnx, table, exclude: list[str], split: _Split, spec) -> Scores:
    with tempfile.TemporaryDirectory(prefix="wb-sens-") as tmp:
        path = write_qdq_model(
            fp32_onnx, table, Path(tmp) / "q.onnx", per_channel=spec.per_channel, exclude=exclude
        )
        logits = model_logits(path, split.feeds, spec.threads)
    return score_logits(logits, split.fp32, split.labels)


def layer_sensitivity(
    fp32_onnx: str | Path,
    table: CalibrationTable,
    feeds: Sequence[Feed],
    labels: Sequence[int] | np.ndarray,
    spec: SensitivitySpec = SensitivitySpec(),
    progress: Progress | None = None,
) -> SensitivityResult:
    """Measure every group (streamed, cached), rank them and correlate the proxies."""
    from scipy.stats import spearmanr

    from workbench.provenance import collect_provenance

    t0 = time.perf_counter_ns()
    cdir = _cache_dir(fp32_onnx, table, feeds, np.asarray(labels, dtype=np.int64), spec)
    if spec.use_cache and (cdir / RESULT_FILE).is_file():
        cached = SensitivityResult.load(cdir / RESULT_FILE)
        if progress:
            progress(len(cached.layers), len(cached.layers))
        return cached
    layers = []
    for done, total, entry in iter_sensitivity(fp32_onnx, table, feeds, labels, spec):
        layers.append(entry)
        if progress:
            progress(done, total)
    y = np.asarray(labels, dtype=np.int64)
    split = _Split(feeds, y, model_logits(fp32_onnx, feeds, spec.threads))
    all_q = _score_build(fp32_onnx, table, [], split, spec)
    kl = np.array([e.only_this.kl_mean for e in layers])
    ranked = sorted(layers, key=lambda e: (-e.only_this.kl_mean, e.group.onnx_node))
    result = SensitivityResult(
        schema_version=SCHEMA_VERSION,
        model_sha256=sha256_file(fp32_onnx),
        table_method=table.method,
        per_channel=spec.per_channel,
        n_samples=int(y.size),
        fp32_accuracy=float(np.mean(split.fp32.argmax(axis=1) == y)),
        all_quantized=all_q,
        layers=layers,
        ranking=[e.group.onnx_node for e in ranked],
        spearman_sqnr=_spearman(spearmanr, -np.array([e.sqnr_db for e in layers]), kl),
        spearman_mse=_spearman(spearmanr, np.array([e.mse for e in layers]), kl),
        seconds=(time.perf_counter_ns() - t0) / 1e9,
        provenance=collect_provenance(),
    )
    if spec.use_cache:
        result.save(cdir / RESULT_FILE)
    return result


def proxy_ranking(
    fp32_onnx: str | Path,
    table: CalibrationTable,
    feeds: Sequence[Feed],
    spec: SensitivitySpec = SensitivitySpec(),
) -> list[str]:
    """Node groups by proxy SQNR, lowest first: a ranking from one FP32 pass, no builds.

    For a quick search where per-layer builds cost too much; check ``spearman_sqnr`` of a
    full ``layer_sensitivity`` on the same model family before trusting it.
    """
    groups = node_groups(fp32_onnx, spec.reference_seq_len)
    proxies = layer_proxies(fp32_onnx, table, feeds, groups, spec)
    return sorted(proxies, key=lambda n: (proxies[n][0], n))


def _spearman(spearmanr, proxy: np.ndarray, task: np.ndarray) -> float:
    ok = np.isfinite(proxy) & np.isfinite(task)
    if ok.sum() < 3 or np.ptp(proxy[ok]) == 0 or np.ptp(task[ok]) == 0:
        return float("nan")  # undefined for constant or too few values
    return float(spearmanr(proxy[ok], task[ok]).statistic)
