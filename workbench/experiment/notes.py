"""Plain-language notes on a run's builds that make surprising numbers visible."""

from __future__ import annotations

from dataclasses import replace

from workbench.backends.registry import capabilities
from workbench.results.precision import find_precision
from workbench.results.records import BuildResult, LatencyResult


def annotate(
    results: list[BuildResult],
    shape: tuple[int, int] = (1, 128),
    weights: dict[str, str] | None = None,
) -> list[BuildResult]:
    """Add notes such as "INT8 ran no faster than ort-fp32 here" to the builds, judged at
    ``shape`` (the gate's latency shape when it has one); ``weights`` maps a build's name to
    its weight scales as its backend built them (``Artifact.weights``)."""
    from workbench.provenance import cpu_int8_flags

    flags = cpu_int8_flags()
    vnni = [f for f in flags if "vnni" in f or "amx" in f]
    isa = f"this CPU has {', '.join(vnni)}" if vnni else "this CPU lacks VNNI/AMX int8 instructions"
    by = {b.name: b for b in results}
    base = by.get("ort-fp32")
    out = []
    for b in results:
        notes = list(b.notes)
        mine, theirs = _at(b, shape), _at(base, shape) if base else None
        p = find_precision(b.precision)
        if base and p and p.int8 and mine and theirs:
            ratio = theirs.p50_ms / mine.p50_ms
            if ratio < 1.1:
                notes.append(
                    f"{b.precision} ran {ratio:.2f}x the speed of ort-fp32 at batch "
                    f"{shape[0]} x seq {shape[1]} ({isa}): INT8 does not pay off here as built"
                )
                per_channel = (weights or {}).get(b.name) == "per-channel"
                if per_channel and p.ranges == "static":
                    notes.append(
                        "per-channel weight scales ran slower at batch 1 than per-tensor ones "
                        "in ONNX Runtime's CPU kernels when measured side by side "
                        "(benchmarks/README.md); `--per-tensor` trades some accuracy for speed"
                    )
        if b.int8_coverage and b.int8_coverage.share < 0.5:
            notes.append(
                f"only {b.int8_coverage.quantized_matmul} of "
                f"{b.int8_coverage.quantized_matmul + b.int8_coverage.float_matmul} MatMul-like "
                "nodes ran in INT8 after ORT's graph optimization"
            )
        out.append(replace(b, notes=notes))
    return out


def _at(build: BuildResult, shape: tuple[int, int]) -> LatencyResult | None:
    return next(
        (x for x in build.latency if (x.batch_size, x.seq_len) == shape),
        build.latency[0] if build.latency else None,
    )


def cross_backend_agreement(
    results: list[BuildResult], preds: dict[str, list[int]]
) -> list[BuildResult]:
    """One table, two backends: note how often each CUDA INT8 build agrees per sample with the
    CPU Q/DQ model built from the same calibration table (what TensorRT would build from it),
    and why they can differ."""
    qdqs = [b for b in results if _table_int8(b) and capabilities(b.backend).runs_qdq_model]
    qdq = next((b for b in qdqs if b.device == "cpu"), qdqs[0] if qdqs else None)
    if qdq is None:
        return results
    out = []
    for b in results:
        own = _table_int8(b) and capabilities(b.backend).own_int8_kernels
        if own and b.name in preds:
            a, q = preds[b.name], preds[qdq.name]
            share = sum(x == y for x, y in zip(a, q, strict=True)) / max(len(a), 1)
            note = (
                f"agrees with {qdq.name} (the Q/DQ model of the same calibration table, which "
                f"TensorRT would build) on {share:.2%} of {len(a)} test predictions"
            )
            if share < 0.995:
                note += _gap_note(b, qdq)
            b = replace(b, notes=[*b.notes, note])
        out.append(b)
    return out


def _table_int8(b: BuildResult) -> bool:
    """INT8 with static ranges from the calibration table (what a Q/DQ model encodes)."""
    p = find_precision(b.precision)
    return p is not None and p.int8 and p.ranges == "static" and p.table == "int8"


def _gap_note(cuda: BuildResult, qdq: BuildResult) -> str:
    """Why two INT8 realizations of one table disagree (measured: int8_two_backends.py)."""
    mine = f"{cuda.accuracy.agreement:.2%}" if cuda.accuracy else "?"
    theirs = f"{qdq.accuracy.agreement:.2%}" if qdq.accuracy else "?"
    return (
        f"; the gap: the Q/DQ model also quantizes the attention MatMuls (Q·Kᵀ, P·V) that this "
        "build keeps in FP16, and this build computes between its integer GEMMs in FP16; INT8 "
        "rounding turns such tiny input differences into flips on the samples within INT8 "
        f"error of the decision boundary, so two INT8 realizations agree about as well as each "
        f"agrees with the reference ({mine} and {theirs} here). Same MatMuls and FP32 compute "
        "agree on 99.96% (benchmarks/int8_two_backends.py, docs/gpu-lowp.md)"
    )
