"""What the content-addressed cache (``$WORKBENCH_CACHE``) holds, and emptying it.

Runs keep records and reports; the big artefacts (classifier, ONNX export, Q/DQ models,
TensorRT engines) live once here and the records refer to them by path and sha256. Only
the folders the workbench itself makes are counted as kinds and removed by ``clear_cache``:
a cache variable pointed at the wrong folder never costs anything else.

Example::

    for kind, size in cache_sizes().items():
        print(kind, size)
    freed = clear_cache()
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from workbench.fileio import cache_root

# The top-level folders the workbench writes (``cache_root() / KIND``), what each holds.
KINDS = {
    "models": "prepared classifiers (PyTorch)",
    "onnx": "ONNX exports",
    "builds": "built models: Q/DQ ONNX, dynamic INT8, engines",
    "quantized": "ONNX Runtime's own static INT8 models",
    "fused": "fused ONNX graphs",
    "tensorrt": "TensorRT engines and timing caches",
    "tables": "calibration tables",
    "comparisons": "calibration-method comparisons",
    "sensitivity": "per-layer sensitivity",
    "evals": "cached evaluations (logits)",
    "latency": "latency records",
    "traffic": "traffic logits",
    "hf-datasets": "datasets library cache",
    "logs": "crash logs",
}
OTHER = "other (not the workbench's; never cleared)"


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            with contextlib.suppress(OSError):  # removed while we walked
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def cache_sizes(root: Path | None = None) -> dict[str, int]:
    """Bytes per kind of cache entry (kinds that are present), then anything else as OTHER."""
    base = root or cache_root()
    out: dict[str, int] = {}
    other = 0
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        if entry.name in KINDS and entry.is_dir() and not entry.is_symlink():
            out[entry.name] = _size(entry)
        else:
            other += _size(entry)
    if other:
        out[OTHER] = other
    return out


def clear_cache(root: Path | None = None) -> int:
    """Remove every workbench kind folder from the cache; returns the bytes freed. Runs that
    refer to a removed model keep their records and reports; a later run rebuilds it."""
    base = root or cache_root()
    freed = 0
    for kind in KINDS:
        path = base / kind
        if path.is_dir() and not path.is_symlink():
            freed += _size(path)
            shutil.rmtree(path)
    return freed


def human(n: int) -> str:
    """Bytes as 12.3 MB (decimal units, as ``du --si`` prints them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
