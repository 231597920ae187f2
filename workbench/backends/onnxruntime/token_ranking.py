"""Which feed-forward layers gain most from per-token INT8 activations, measured without labels.

Per-token activations cost time (a row reduction, a scale and a rescale around each MatMul),
and they do not help every layer alike. On the default classifier (fused graph, SmoothQuant
α 0.8, 512 calibration rows) per-token at layer 0's narrowing feed-forward MatMul alone took
the output half-way from all-per-tensor to all-per-token (mean KL to FP32 0.00160 → 0.00116;
all six: 0.00076), and at layer 3 it took it *further* from FP32 (0.00199). So the
``per-token-ffn-down-worst-K`` recovery options make only the K layers where it helps most
per-token, ranked here on the calibration set — no labels, so the choice cannot fit the rows a
gate judges:

1. every candidate MatMul per-tensor dynamic (``DynamicQuantizeLinear`` → ``MatMulInteger``,
   the pattern ORT fuses into its dynamic kernel) is the baseline;
2. for each candidate, the same with only that MatMul per-token;
3. gain = mean KL(FP32 ‖ baseline) − mean KL(FP32 ‖ that variant) over the calibration rows.

A layer whose gain is not positive is never chosen. The ranking is cached (JSON) by the
content of both models, the candidate nodes and the calibration feeds. Cost: n + 2 passes
over the calibration set and n + 1 graph rewrites for n candidates — about half a minute for
the default classifier (6 layers, 512 rows) on 2 cores.

Example::

    gains = ffn_down_ranking("smoothed.onnx", "dynamic_without_ffn_down.onnx", nodes,
                             calibration, cache / "recovery")
    chosen = [g.node for g in gains[:2] if g.gain > 0]
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workbench.backends.base import Feed, feeds_sha256
from workbench.errors import CalibrationError
from workbench.fileio import atomic_write_json, sha256_file, sha256_json

RANKING_VERSION = 1


@dataclass(frozen=True)
class LayerGain:
    """One candidate MatMul: mean KL to FP32 with only it per-token, and the gain over none."""

    node: str
    kl: float
    gain: float


def ffn_down_ranking(
    fp32_onnx: str | Path,
    quantized: str | Path,
    nodes: Sequence[str],
    calibration: Callable[[], Iterable[Feed]],
    folder: str | Path,
) -> list[LayerGain]:
    """Gains of per-token activations at each of ``nodes`` — float MatMuls of ``quantized``,
    the dynamic INT8 model of ``fp32_onnx`` that left them out — largest first."""
    feeds = list(calibration())
    if not feeds:
        raise CalibrationError("ranking layers for per-token needs calibration rows; got none")
    made_by = [sha256_file(fp32_onnx), sha256_file(quantized), list(nodes)]
    made_by += [feeds_sha256(feeds), RANKING_VERSION]
    cache = Path(folder) / f"{sha256_json(made_by)[:16]}.ranking.json"
    if cache.is_file():
        return [LayerGain(**d) for d in json.loads(cache.read_text())]
    ref = _log_probs(fp32_onnx, feeds)
    with tempfile.TemporaryDirectory(prefix="workbench-ranking-") as tmp:
        base_kl = _kl(ref, _log_probs(_variant(quantized, nodes, None, Path(tmp)), feeds))
        gains = []
        for node in nodes:
            kl = _kl(ref, _log_probs(_variant(quantized, nodes, node, Path(tmp)), feeds))
            gains.append(LayerGain(node, kl, base_kl - kl))
    gains.sort(key=lambda g: -g.gain)  # stable: graph order among equal gains
    atomic_write_json(cache, [asdict(g) for g in gains])
    return gains


def _variant(quantized: str | Path, nodes: Sequence[str], token: str | None, tmp: Path) -> Path:
    """``quantized`` with ``token`` per-token and the other ``nodes`` per-tensor dynamic."""
    from workbench.calibration.per_token import dynamic_matmuls

    path = Path(quantized)
    if token is not None:
        path = dynamic_matmuls(path, [token], tmp / "token.onnx", granularity="per-token")
    rest = [n for n in nodes if n != token]
    if rest:
        path = dynamic_matmuls(path, rest, tmp / "variant.onnx", granularity="per-tensor")
    return path


def _log_probs(model: str | Path, feeds: Sequence[Feed]) -> np.ndarray:
    """Log-softmax of the model's first output, one row per calibration row."""
    from workbench.backends.onnxruntime.runner import OrtRunner

    with OrtRunner(model, name="ranking") as r:
        first = r.output_names[0]
        z = np.concatenate([r.infer(f)[first] for f in feeds]).astype(np.float64)
    z = z.reshape(len(z), -1)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _kl(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean KL(ref ‖ got) over rows (log-probabilities in, nats out). ``evaluate.fidelity``
    has a logits version, but backends sit below evaluate in the import contract."""
    return float((np.exp(ref) * (ref - got)).sum(axis=1).mean())
