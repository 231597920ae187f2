"""Which backends are usable on this machine, and why not (``workbench doctor``'s probes).

Each probe imports its library lazily and never raises: a missing package, driver or device
is a row saying so. Example::

    report = collect()
    usable = [b for b, ok in report.backends.items() if ok]
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata


@dataclass(frozen=True)
class Check:
    """One probed component."""

    component: str
    ok: bool
    version: str
    detail: str


@dataclass(frozen=True)
class DoctorReport:
    """All probes plus the backends they make usable."""

    checks: list[Check]
    gpus: list[str]
    backends: dict[str, bool] = field(default_factory=dict)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def probe_tensorrt() -> Check:
    from workbench.backends.tensorrt._trt import availability, version_tuple

    ok, info = availability()
    if not ok:
        return Check("tensorrt", False, "", info)
    from workbench.backends.tensorrt.build import precisions_on

    precisions = ", ".join(precisions_on(version_tuple(info)[0]))
    return Check("tensorrt", True, info, f"precisions: {precisions}")


def probe_nvidia_smi() -> tuple[Check, list[str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Check("nvidia-smi", False, "", "not found (no NVIDIA driver on PATH)"), []
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        res = subprocess.run([exe, *query], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("nvidia-smi", False, "", f"failed: {exc}"), []
    if res.returncode != 0:
        return Check("nvidia-smi", False, "", (res.stderr or res.stdout).strip()[:200]), []
    rows = [r.strip() for r in res.stdout.splitlines() if r.strip()]
    driver = rows[0].split(",")[1].strip() if rows and rows[0].count(",") >= 2 else ""
    gpus = [r.split(",")[0].strip() for r in rows]
    return Check("nvidia-smi", bool(rows), driver, "; ".join(rows) or "no GPU listed"), gpus


def probe_polygraphy() -> Check:
    """Polygraphy (builds and runs TensorRT engines) and whether it finds a CUDA device."""
    version = _version("polygraphy")
    if not version:
        return Check("polygraphy", False, "", "not installed (extra: tensorrt)")
    from workbench.backends.tensorrt._trt import gpu_tag
    from workbench.errors import BackendUnavailableError

    try:
        return Check("polygraphy", True, version, f"CUDA device 0: {gpu_tag()}")
    except (BackendUnavailableError, OSError) as exc:  # OSError: no CUDA runtime library
        return Check("polygraphy", False, version, str(exc))


def probe_torch() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", False, "", "not installed (extra: torch)")
    cuda = torch.version.cuda or "none (CPU build)"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return Check("torch", True, torch.__version__, f"CUDA {cuda}: {', '.join(names)}")
    return Check("torch", True, torch.__version__, f"CUDA {cuda}; no CUDA device visible")


def probe_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", False, "", "not installed")
    providers = ort.get_available_providers()
    return Check("onnxruntime", True, ort.__version__, "providers: " + ", ".join(providers))


def collect() -> DoctorReport:
    """Run every probe and decide which backends are usable here."""
    trt = probe_tensorrt()
    smi, gpus = probe_nvidia_smi()
    pg, torch_c, ort_c = probe_polygraphy(), probe_torch(), probe_onnxruntime()
    checks = [trt, smi, pg, torch_c, ort_c]
    backends = {
        "pytorch-cpu": torch_c.ok,
        "pytorch-cuda": torch_c.ok and "no CUDA device" not in torch_c.detail,
        "onnxruntime-cpu": ort_c.ok and "CPUExecutionProvider" in ort_c.detail,
        "onnxruntime-cuda": ort_c.ok and "CUDAExecutionProvider" in ort_c.detail and bool(gpus),
        "tensorrt": trt.ok and pg.ok,
    }
    return DoctorReport(checks=checks, gpus=gpus, backends=backends)
