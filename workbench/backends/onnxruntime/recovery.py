"""Accuracy-recovery options a ``[[build]]`` can name for dynamic INT8 on ONNX Runtime's CPU,
so the build ``workbench search`` picks can be rebuilt (and gated) from the experiment file.

``recovery = ["smoothquant-0.8", "per-token-ffn"]`` on ``precision = "int8-dynamic"``:

* ``smoothquant-A`` (0 < A ≤ 1): SmoothQuant-style migration of activation outliers into the
  preceding LayerNorms (``calibration.smoothquant``), from per-channel maxima of one pass over
  the experiment's calibration set; then dynamic INT8 of the smoothed model.
* ``per-token-ffn``: every feed-forward MatMul (weight not square) takes one int8 scale per
  token instead of ORT's one per tensor (``calibration.per_token``); the rest stay ORT's
  dynamic kernels (Q/K/V packed into QAttention on the fused graph).

On the default classifier, fused graph, the two together brought the disagreements with
FP32 on the 2,551-row test split from 82 to 26 (``docs/search.md``). The search's own
candidates (``experiment.search_builds``) are built by the same functions.

Example::

    q = dynamic_with_recovery("fused.onnx", True, (), ("smoothquant-0.8", "per-token-ffn"),
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
_SMOOTHQUANT = re.compile(r"smoothquant-(0\.\d+|1(\.0+)?)")
RECOVERY_VERSION = 2  # 2: per-token abs-max from two reductions, multiply by the reciprocal


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
    bad = [n for n in names if n != PER_TOKEN_FFN and n not in smooth]
    if bad:
        return (
            f"recovery option {bad[0]!r} unknown; use 'smoothquant-A' (0 < A <= 1) and/or "
            f"{PER_TOKEN_FFN!r}"
        )
    if len(smooth) > 1 or len(set(names)) != len(names):
        return "recovery names each option once (at most one smoothquant-A)"
    return None


def needs_calibration(names: Sequence[str]) -> bool:
    """True when an option reads the calibration set (SmoothQuant's channel maxima)."""
    return any(_SMOOTHQUANT.fullmatch(n) for n in names)


def ffn_matmuls(model: Any) -> list[str]:
    """MatMuls (in graph order) whose constant weight is 2-D and not square: a transformer's
    feed-forward projections (hidden -> intermediate and back)."""
    inits = {i.name: i for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and len(n.input) > 1
        and n.input[1] in inits
        and len(inits[n.input[1]].dims) == 2
        and len(set(inits[n.input[1]].dims)) == 2
    ]


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
    if PER_TOKEN_FFN not in recovery:
        q = quantize_dynamic_int8(base, per_channel, float_nodes)
        return q.path, "; ".join([q.detail, *detail])
    ffn = [
        n for n in ffn_matmuls(load_onnx(base, load_external_data=False)) if n not in float_nodes
    ]
    q = quantize_dynamic_int8(base, per_channel, (*float_nodes, *ffn))
    if not ffn:
        return q.path, "; ".join([q.detail, *detail, "no feed-forward MatMul to make per-token"])
    made_by = [sha256_file(q.path), sorted(ffn), RECOVERY_VERSION]
    out = folder / f"{sha256_json(made_by)[:16]}.onnx"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        dynamic_matmuls(q.path, ffn, out, granularity="per-token")
    detail.append(f"{len(ffn)} feed-forward MatMuls with per-token activations")
    return out, "; ".join([q.detail, *detail])
