"""Accuracy-recovery options a ``[[build]]`` can name for dynamic INT8 on ONNX Runtime's CPU,
so the build ``workbench search`` picks can be rebuilt (and gated) from the experiment file.

``recovery = ["smoothquant-0.8", "per-token-ffn-down"]`` on ``precision = "int8-dynamic"``:

* ``smoothquant-A`` (0 < A ≤ 1): SmoothQuant-style migration of activation outliers into the
  preceding LayerNorms (``calibration.smoothquant``), from per-channel maxima of one pass over
  the experiment's calibration set; then dynamic INT8 of the smoothed model.
* ``per-token-ffn``: every feed-forward MatMul (weight not square) takes one int8 scale per
  token instead of ORT's one per tensor (``calibration.per_token``); the rest stay ORT's
  dynamic kernels (Q/K/V packed into QAttention on the fused graph).
* ``per-token-ffn-down``: only the feed-forward MatMuls that narrow (intermediate -> hidden:
  they read the GELU output, the long-tailed activation) go per-token; the widening ones keep
  ORT's fused per-tensor op, which is cheaper (SmoothQuant covers their LayerNorm input).
* ``per-token-ffn-down-worst-K``: only the K narrowing feed-forward MatMuls where per-token
  helps most, ranked without labels on the calibration set (``token_ranking``: mean KL to
  FP32 with only that layer per-token, against none); a layer it does not help is never
  taken, so fewer than K may be.

At most one per-token option. On the default classifier, fused graph, SmoothQuant α 0.8 with
either brought the disagreements with FP32 from 37 to 11 (all FFN) / 13 (FFN-down) on the
search half (1,275 rows) of the test split (``docs/search.md``). The search's own candidates
(``experiment.search_builds``) are built by the same functions.

Example::

    q = dynamic_with_recovery("fused.onnx", True, (), ("smoothquant-0.8", "per-token-ffn-down"),
                              calibration_feeds, cache_dir)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from workbench.errors import CalibrationError
from workbench.fileio import sha256_file, sha256_json

PER_TOKEN_FFN = "per-token-ffn"
PER_TOKEN_FFN_DOWN = "per-token-ffn-down"
PER_TOKEN = (PER_TOKEN_FFN, PER_TOKEN_FFN_DOWN)
_SMOOTHQUANT = re.compile(r"smoothquant-(0\.\d+|1(\.0+)?)")
_WORST = re.compile(r"per-token-ffn-down-worst-([1-9]\d?)")
# 2: per-token abs-max from two reductions, multiply by the reciprocal; 3: after a fused GELU
# one reduction and a floor
RECOVERY_VERSION = 3


def recovery_refusal(names: Sequence[str], backend: str, device: str, precision: str) -> str | None:
    """Why ``recovery = names`` cannot be built (None when it can): the fix is in the text."""
    if not names:
        return None
    if (backend, device, precision) != ("onnxruntime", "cpu", "int8-dynamic"):
        return (
            "recovery applies to backend = 'onnxruntime', device = 'cpu', "
            "precision = 'int8-dynamic'; remove recovery or change the build"
        )
    smooth = [n for n in names if _SMOOTHQUANT.fullmatch(n)]
    token = [n for n in names if _per_token(n)]
    bad = [n for n in names if n not in token and n not in smooth]
    if bad:
        return (
            f"recovery option {bad[0]!r} unknown; use 'smoothquant-A' (0 < A <= 1) and/or "
            f"one of {[*PER_TOKEN, 'per-token-ffn-down-worst-K']} (K from 1 to 99)"
        )
    if len(smooth) > 1 or len(token) > 1 or len(set(names)) != len(names):
        return (
            "recovery names each option once (at most one smoothquant-A and one of "
            f"{[*PER_TOKEN, 'per-token-ffn-down-worst-K']})"
        )
    return None


def _per_token(name: str) -> bool:
    return name in PER_TOKEN or _WORST.fullmatch(name) is not None


def needs_calibration(names: Sequence[str]) -> bool:
    """True when an option reads the calibration set (SmoothQuant's channel maxima, the
    per-token layer ranking)."""
    return any(_SMOOTHQUANT.fullmatch(n) or _WORST.fullmatch(n) for n in names)


def ffn_matmuls(model: Any, narrowing_only: bool = False) -> list[str]:
    """MatMuls (in graph order) whose constant weight is 2-D and not square: a transformer's
    feed-forward projections (hidden -> intermediate and back); ``narrowing_only``: just the
    ones back (weight [in, out] with in > out), which read the GELU output."""
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) > 1 else None
        if w is None or len(w.dims) != 2 or w.dims[0] == w.dims[1]:
            continue
        if not narrowing_only or w.dims[0] > w.dims[1]:
            out.append(n.name)
    return out


def smoothed_model(
    fp32_onnx: str | Path, alpha: float, feeds: Iterable[Any], out_dir: Path
) -> Path:
    """``fp32_onnx`` after SmoothQuant migration with strength ``alpha`` (cached by content)."""
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.calibration.smoothquant import smooth_model, smoothing_sites
    from workbench.calibration.stats import channel_absmax

    out = (
        out_dir
        / f"{sha256_json([sha256_file(fp32_onnx), f'smoothquant-{alpha:g}'])[:16]}.fp32.onnx"
    )
    if not out.is_file():
        sites = smoothing_sites(fp32_onnx)
        absmax = channel_absmax(fp32_onnx, sites, feeds, open_runner=open_ort_runner)
        out_dir.mkdir(parents=True, exist_ok=True)
        smooth_model(Path(fp32_onnx), absmax, alpha, out)
    return out


def dynamic_with_recovery(
    fp32_onnx: str | Path,
    per_channel: bool,
    float_nodes: tuple[str, ...],
    recovery: Sequence[str],
    calibration: Callable[[], Iterable[Any]] | None,
    cache_dir: str | Path,
) -> tuple[Path, str]:
    """(model path, detail) of dynamic INT8 with ``recovery`` applied (see the module doc)."""
    from workbench.backends.onnxruntime.build import quantize_dynamic_int8
    from workbench.calibration.graph import load_onnx
    from workbench.calibration.per_token import dynamic_matmuls

    folder = Path(cache_dir) / "recovery"
    base = Path(fp32_onnx)
    detail = []
    for name in (n for n in recovery if _SMOOTHQUANT.fullmatch(n)):
        if calibration is None:
            raise CalibrationError(f"recovery {name!r} needs the experiment's calibration set")
        alpha = float(name.split("-", 1)[1])
        base = smoothed_model(base, alpha, calibration(), folder)
        detail.append(f"SmoothQuant α {alpha:g}")
    token = next((n for n in recovery if _per_token(n)), None)
    if token is None:
        q = quantize_dynamic_int8(base, per_channel, float_nodes)
        return q.path, "; ".join([q.detail, *detail])
    narrowing = token != PER_TOKEN_FFN
    graph = load_onnx(base, load_external_data=False)
    ffn = [n for n in ffn_matmuls(graph, narrowing) if n not in float_nodes]
    which = "narrowing feed-forward" if narrowing else "feed-forward"
    worst = _WORST.fullmatch(token)
    if worst is not None and ffn:
        if calibration is None:
            raise CalibrationError(f"recovery {token!r} needs the experiment's calibration set")
        k = int(worst[1])
        ffn, chose = _most_helped(base, per_channel, float_nodes, ffn, k, calibration, folder)
        which += f" (of {chose})"
    q = quantize_dynamic_int8(base, per_channel, float_nodes, quantized_later=tuple(ffn))
    if not ffn:
        none = (
            f"0 {which} MatMuls made per-token"
            if worst
            else "no feed-forward MatMul to make per-token"
        )
        return q.path, "; ".join([q.detail, *detail, none])
    made_by = [sha256_file(q.path), sorted(ffn), RECOVERY_VERSION]
    out = folder / f"{sha256_json(made_by)[:16]}.onnx"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        dynamic_matmuls(q.path, ffn, out, granularity="per-token")
    detail.append(f"{len(ffn)} {which} MatMuls with per-token activations")
    return out, "; ".join([q.detail, *detail])


def _most_helped(
    base: Path,
    per_channel: bool,
    float_nodes: tuple[str, ...],
    ffn: list[str],
    k: int,
    calibration: Callable[[], Iterable[Any]],
    folder: Path,
) -> tuple[list[str], str]:
    """The ``k`` of ``ffn`` (graph order) whose per-token activations bring the model nearest
    to FP32 on the calibration set, only those that help; and how they were chosen, in words."""
    from workbench.backends.onnxruntime.build import quantize_dynamic_int8
    from workbench.backends.onnxruntime.token_ranking import ffn_down_ranking

    without = quantize_dynamic_int8(base, per_channel, float_nodes, quantized_later=tuple(ffn))
    folder.mkdir(parents=True, exist_ok=True)
    gains = ffn_down_ranking(base, without.path, ffn, calibration, folder)
    best = {g.node for g in gains[:k] if g.gain > 0}
    chosen = [n for n in ffn if n in best]
    words = ", ".join(_layer(n) for n in chosen) or "none helps"
    return chosen, f"{len(ffn)}, the {k} most helped by calibration KL to FP32: {words}"


def _layer(node: str) -> str:
    """``layer.3`` out of an encoder node name, else the name itself."""
    m = re.search(r"layer[._](\d+)", node)
    return f"layer {m[1]}" if m else node
