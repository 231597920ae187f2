"""TensorRT calibration cache: writer and validating reader.

Format (text)::

    TRT-101601-EntropyCalibration2
    /encoder/embeddings/LayerNorm/LayerNormalization_output_0: 3c010204

The header carries TensorRT's integer version code (``NV_TENSORRT_VERSION``:
major*10000+minor*100+patch from TensorRT 10 on, major*1000+minor*100+patch
before) and the algorithm; each line is a tensor name and the big-endian IEEE
float32 scale ``amax / 127`` as 8 hex digits. TensorRT reads names as network
tensor names, which for an ONNX-parsed network are the ONNX tensor names.

Example::

    write_trt_cache(table, "model.calib")
    table = read_trt_cache("model.calib", expected_tensors=quantizable_tensors("model.onnx"))
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from workbench.calibration.table import CalibrationTable
from workbench.errors import CalibrationError, ConfigError
from workbench.fileio import atomic_write_text

log = logging.getLogger(__name__)

MIN_COVERAGE = 0.9  # below this share of a model's quantizable activations a cache is refused
MIN_AMAX, MAX_AMAX = 1e-30, 1e30  # a real activation range lies far inside these
ALGORITHMS = {"EntropyCalibration2": "entropy", "MinMaxCalibration": "max"}
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")
INT8_MAX = 127.0


def trt_version_code(version: str) -> int:
    """``"10.16.1"`` -> 101601, ``"8.6.1"`` -> 8601 (``NV_TENSORRT_VERSION``); digits kept."""
    if version.isdigit():
        return int(version)
    parts = version.split(".")
    try:
        major, minor, patch = (int(x) for x in [*parts, "0", "0"][:3])
    except ValueError as exc:
        raise ConfigError(f"TensorRT version {version!r} is not like '10.16.1'") from exc
    return (
        major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch
    )


def scale_hex(amax: float) -> str:
    """8 hex digits of the big-endian float32 ``amax / 127``."""
    return struct.pack(">f", np.float32(amax / INT8_MAX)).hex()


def hex_amax(digits: str) -> float:
    """Inverse of ``scale_hex``: amax = scale * 127 (scale read as big-endian float32)."""
    (scale,) = struct.unpack(">f", bytes.fromhex(digits))
    return float(np.float32(scale)) * INT8_MAX


def write_trt_cache(
    table: CalibrationTable,
    path: str | Path,
    trt_version: str = "10.16.1",
    algorithm: str | None = None,
) -> Path:
    """Write ``table`` as a TensorRT calibration cache (atomically); returns the path.

    The header names the algorithm the ranges came from: ``MinMaxCalibration`` for a ``max``
    table, ``EntropyCalibration2`` otherwise (TensorRT has no header for percentile/MSE)."""
    if algorithm is None:
        algorithm = "MinMaxCalibration" if table.method == "max" else "EntropyCalibration2"
    if algorithm not in ALGORITHMS:
        raise ConfigError(
            f"cache algorithm {algorithm!r} is not one TensorRT accepts for these ranges; "
            f"use one of {sorted(ALGORITHMS)}"
        )
    lines = [f"TRT-{trt_version_code(trt_version)}-{algorithm}"]
    for name, amax in table.amax.items():
        if "\n" in name or not np.isfinite(amax) or amax < 0:
            raise CalibrationError(f"cannot write tensor {name!r} with amax {amax} to a cache")
        lines.append(f"{name}: {scale_hex(amax)}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_trt_cache(
    path: str | Path, expected_tensors: Collection[str] | None = None
) -> CalibrationTable:
    """Read a TensorRT calibration cache; refuse a foreign header or another model's tensors.

    With ``expected_tensors`` (e.g. ``quantizable_tensors(model)``), every expected
    tensor must be in the cache (TensorRT caches may list more tensors than that).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CalibrationError(f"calibration cache {p} does not exist") from exc
    except IsADirectoryError as exc:
        raise CalibrationError(f"calibration cache {p} is a folder; pass the cache file") from exc
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{p} is not a text TensorRT calibration cache") from exc
    lines = [ln.rstrip("\r") for ln in text.splitlines() if ln.strip()]
    head = _HEADER.match(lines[0]) if lines else None
    if head is None or head.group(2) not in ALGORITHMS:
        got = lines[0][:60] if lines else "an empty file"
        raise CalibrationError(
            f"{p} is not a TensorRT EntropyCalibration2/MinMaxCalibration cache (header {got!r}); "
            "recalibrate to write one"
        )
    amax: dict[str, float] = {}
    for no, line in enumerate(lines[1:], start=2):
        m = _LINE.match(line)
        if m is None:
            raise CalibrationError(f"{p}:{no}: expected 'tensor: 8 hex digits', got {line[:60]!r}")
        name, value = m.group(1), abs(hex_amax(m.group(2)))
        if name in amax:
            raise CalibrationError(f"{p}:{no}: tensor {name!r} is listed twice; recalibrate")
        if not np.isfinite(value) or (value != 0 and not MIN_AMAX <= value <= MAX_AMAX):
            raise CalibrationError(
                f"{p}:{no}: scale of {name!r} gives amax {value:.3g}, outside "
                f"[{MIN_AMAX:g}, {MAX_AMAX:g}] (denormal or overflowing); recalibrate"
            )
        amax[name] = value
    if expected_tensors is not None:
        _check_tensors(p, amax, expected_tensors)
    return CalibrationTable(
        amax=amax,
        method=ALGORITHMS[head.group(2)],
        n_samples=0,
        model_sha256="",
        calibration_set_sha256="",
        source="tensorrt-cache",
    )


def _check_tensors(p: Path, amax: dict[str, float], expected: Collection[str]) -> None:
    want = list(expected)
    missing = [n for n in want if n not in amax]
    if not missing:
        return
    if len(missing) == len(want):
        raise CalibrationError(
            f"{p} is a cache for another model: none of this model's {len(want)} tensors "
            f"(e.g. {want[0]!r}) is in it; recalibrate this model"
        )
    raise CalibrationError(
        f"{p} lacks {len(missing)} of this model's {len(want)} tensors (e.g. {missing[0]!r}); "
        "it was made for another model or tensor set: recalibrate"
    )


def check_cache_coverage(
    table: CalibrationTable, fp32_onnx: str | Path, source: str, allow_partial: bool = False
) -> float:
    """The share of ``fp32_onnx``'s quantizable activations that ``table`` (read from the
    TensorRT cache ``source``) gives a range; CalibrationError below ``MIN_COVERAGE`` unless
    ``allow_partial`` — a cache of 1 of 49 tensors would quantize one activation and leave the
    rest float, a "INT8" model that is neither fast nor what was calibrated.
    """
    from workbench.calibration.graph import quantizable_tensors

    want = quantizable_tensors(fp32_onnx)
    if not want:
        return 1.0
    have = sum(1 for n in want if n in table.amax)
    share = have / len(want)
    what = f"{source} covers {have} of {fp32_onnx}'s {len(want)} quantizable activations"
    if share < MIN_COVERAGE and not allow_partial:
        raise CalibrationError(
            f"{what} ({share:.0%}, below {MIN_COVERAGE:.0%}): most of the model would stay "
            "float; recalibrate this model, or pass allow_partial=True "
            "(--allow-partial-cache) to accept a partial cache"
        )
    if share < 1.0:
        log.warning("%s (%.0f%%); the others stay float", what, 100 * share)
    return share


def trt_cache_to_qdq(
    cache_path: str | Path,
    fp32_onnx: str | Path,
    out_path: str | Path,
    per_channel: bool = False,
    exclude: Sequence[str] = (),
    allow_partial: bool = False,
) -> Path:
    """A TensorRT calibration cache as a Q/DQ ONNX model (cache -> table -> Q/DQ): TensorRT 10
    calibration carried to TensorRT 11, which builds only from Q/DQ models.

    A cache covering under ``MIN_COVERAGE`` of the model's quantizable activations is refused
    (CalibrationError naming the coverage) unless ``allow_partial``. Example::

        trt_cache_to_qdq("calibration.cache", "model.onnx", "model.qdq.onnx")
    """
    from workbench.calibration.qdq import write_qdq_model

    table = read_trt_cache(cache_path)
    check_cache_coverage(table, fp32_onnx, str(cache_path), allow_partial)
    write_qdq_model(fp32_onnx, table, out_path, per_channel=per_channel, exclude=tuple(exclude))
    return Path(out_path)
