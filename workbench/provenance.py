"""Where a result came from: git sha, package versions, device, UTC time."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from workbench.results.records import Provenance

TRACKED_PACKAGES = (
    "workbench",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "transformers",
    "tokenizers",
    "scikit-learn",
    "tensorrt",
)


def git_sha(cwd: str | Path | None = None) -> str:
    """The checkout's HEAD sha (with ``-dirty``), or ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that decide a result; absent ones are left out."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_name() -> str:
    """A human-readable CPU model name (from /proc/cpuinfo where present)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


def cpu_int8_flags() -> list[str]:
    """The CPU's INT8-relevant instruction-set flags: without VNNI/AMX, INT8 GEMMs gain little."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in INT8_FLAGS if f in have]
    except OSError:
        pass
    return []


def collect_provenance(seeds: dict[str, int] | None = None, gpu: str = "") -> Provenance:
    """Snapshot of the environment for a result record."""
    import os

    return Provenance(
        git_sha=git_sha(Path(__file__).resolve().parent),
        packages=package_versions(),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=cpu_name(),
        cpu_count=os.cpu_count() or 0,
        cpu_int8_flags=cpu_int8_flags(),
        gpu=gpu,
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        seeds=dict(seeds or {}),
    )
