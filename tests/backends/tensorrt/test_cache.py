"""Engine cache keys, naming and invalidation (pure; real files in tmp_path)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from workbench.backends.tensorrt.cache import EngineCache, EngineKey, slug, timing_cache_path
from workbench.backends.tensorrt.precision import EngineSpec
from workbench.backends.tensorrt.profiles import ShapeProfile

SPEC = EngineSpec("int8-explicit", ShapeProfile((1, 1), (8, 64), (32, 128))).as_dict()
KEY = EngineKey("a" * 64, SPEC, "b" * 64, "10.16.1.11", "NVIDIA H100 80GB HBM3")


def test_every_part_changes_the_key() -> None:
    variants = [
        replace(KEY, onnx_sha256="c" * 64),
        replace(KEY, spec={**SPEC, "workspace_mb": 2048}),
        replace(KEY, calibration_sha256="d" * 64),
        replace(KEY, trt_version="11.4.0.106"),
        replace(KEY, gpu_name="NVIDIA A100-SXM4-40GB"),
    ]
    digests = {KEY.digest(), *(v.digest() for v in variants)}
    assert len(digests) == 6
    assert KEY.digest() == EngineKey(**vars(KEY)).digest()  # deterministic


def test_dirname_is_readable_and_safe() -> None:
    name = KEY.dirname()
    assert name.startswith("int8-explicit-trt10.16.1.11-nvidia-h100-80gb-hbm3-")
    assert name.endswith(KEY.digest()[:16]) and "/" not in name and " " not in name
    assert slug("") == "unknown"
    assert (
        timing_cache_path(Path("/c"), "10.16.1", "NVIDIA H100").name
        == "trt10.16.1-nvidia-h100.cache"
    )


def test_store_load_roundtrip_and_miss(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load(KEY) is None
    path = cache.store(KEY, b"plan-bytes", {"build_seconds": 1.5})
    assert path.read_bytes() == b"plan-bytes"
    assert cache.load(KEY) == b"plan-bytes"
    assert cache.load(replace(KEY, trt_version="11.4.0")) is None
    meta = json.loads((path.parent / "meta.json").read_text())
    assert meta["parts"]["gpu_name"] == KEY.gpu_name and meta["build_seconds"] == 1.5


def test_corrupt_engine_is_discarded(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, b"plan-bytes")
    path.write_bytes(b"truncated")
    assert cache.load(KEY) is None
    assert not path.parent.exists()


def test_stale_entries_from_other_versions_or_gpus(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(KEY, b"1")
    old = replace(KEY, trt_version="10.3.0")
    other_gpu = replace(KEY, gpu_name="NVIDIA L4")
    cache.store(old, b"2")
    cache.store(other_gpu, b"3")
    stale = {p.name for p in cache.stale(KEY.trt_version, KEY.gpu_name)}
    assert stale == {old.dirname(), other_gpu.dirname()}
    cache.prune(KEY.trt_version, KEY.gpu_name)
    assert [m["parts"]["trt_version"] for m in cache.entries()] == [KEY.trt_version]
    assert cache.load(KEY) == b"1"
