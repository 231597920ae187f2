"""Content-addressed on-disk cache of serialized TensorRT engines (pure; no TensorRT).

An engine depends on the ONNX bytes, the build spec, the calibration (table, Q/DQ model
or calibration batches), the TensorRT version and the GPU (engines are not portable across
either). All five go into the key; changing any one gives a new key, so a stale engine is
never loaded. ``load`` also re-checks the stored engine's sha256 and discards corrupt entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.fileio import atomic_write_bytes, atomic_write_json, cache_root, sha256_json

log = logging.getLogger(__name__)

ENGINE_FILE = "engine.plan"
META_FILE = "meta.json"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class EngineKey:
    """The five things a TensorRT engine depends on."""

    onnx_sha256: str
    spec: dict[str, Any]  # EngineSpec.as_dict()
    calibration_sha256: str  # "" when the precision needs no calibration
    trt_version: str
    gpu_name: str

    def digest(self) -> str:
        """Hex sha256 over all parts (canonical JSON)."""
        return sha256_json({"format": CACHE_FORMAT, **asdict(self)})

    def dirname(self) -> str:
        """Readable, unique folder name: ``<precision>-trt<version>-<gpu>-<hash16>``."""
        precision = str(self.spec.get("precision", "engine"))
        parts = (slug(precision), "trt" + slug(self.trt_version), slug(self.gpu_name))
        return "-".join((*parts, self.digest()[:16]))


def slug(text: str, limit: int = 40) -> str:
    """File-name-safe ``text``: ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")
    return (s or "unknown")[:limit]


def timing_cache_path(root: Path, trt_version: str, gpu_name: str) -> Path:
    """Where the tactic timing cache for one TensorRT version and GPU lives."""
    return root / "timing" / f"trt{slug(trt_version)}-{slug(gpu_name)}.cache"


class EngineCache:
    """Engines under ``<root>/<dirname>/{engine.plan,meta.json}``.

    Example::

        cache = EngineCache()
        plan = cache.load(key)
        if plan is None:
            plan = build(...)
            cache.store(key, plan, {"build_seconds": 12.3})
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "tensorrt" / "engines"

    def entry_dir(self, key: EngineKey) -> Path:
        return self.root / key.dirname()

    def engine_path(self, key: EngineKey) -> Path:
        return self.entry_dir(key) / ENGINE_FILE

    def load(self, key: EngineKey) -> bytes | None:
        """The cached engine bytes, or None (missing, written for another key, or corrupt)."""
        d = self.entry_dir(key)
        meta = read_meta(d)
        plan = d / ENGINE_FILE
        if meta is None or not plan.is_file():
            return None
        if meta.get("key") != key.digest():
            log.warning("engine cache entry %s belongs to another key; ignoring it", d)
            return None
        data = plan.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("engine_sha256"):
            log.warning("engine cache entry %s is corrupt (sha256 mismatch); removing it", d)
            shutil.rmtree(d, ignore_errors=True)
            return None
        return data

    def store(self, key: EngineKey, engine: bytes, extra: dict[str, Any] | None = None) -> Path:
        """Write the engine and its metadata atomically; return the engine path."""
        d = self.entry_dir(key)
        atomic_write_bytes(d / ENGINE_FILE, engine)
        meta = {
            "format": CACHE_FORMAT,
            "key": key.digest(),
            "parts": asdict(key),
            "engine_sha256": hashlib.sha256(engine).hexdigest(),
            "engine_bytes": len(engine),
            **(extra or {}),
        }
        atomic_write_json(d / META_FILE, meta)
        return d / ENGINE_FILE

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every readable entry (with its ``dir``)."""
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            meta = read_meta(d)
            if meta is not None:
                out.append({**meta, "dir": str(d)})
        return out

    def stale(self, trt_version: str, gpu_name: str) -> list[Path]:
        """Entries built by another TensorRT version or on another GPU: never loadable here."""
        return [
            Path(m["dir"])
            for m in self.entries()
            if m.get("parts", {}).get("trt_version") != trt_version
            or m.get("parts", {}).get("gpu_name") != gpu_name
        ]

    def prune(self, trt_version: str, gpu_name: str) -> list[Path]:
        """Delete stale entries (see ``stale``); return what was removed."""
        removed = self.stale(trt_version, gpu_name)
        for d in removed:
            shutil.rmtree(d, ignore_errors=True)
        return removed


def read_meta(entry_dir: Path) -> dict[str, Any] | None:
    """An entry's ``meta.json``, or None if missing/unreadable/of another cache format."""
    try:
        meta = json.loads((entry_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    return meta
