"""ONNX Runtime on the CUDA execution provider (needs ``onnxruntime-gpu``).

A factory over ``OrtRunner``: checks that the CUDA provider is really there, loads
CUDA/cuDNN from the ``nvidia-*`` pip packages (``onnxruntime.preload_dlls``, ORT >= 1.21)
and says which library is missing otherwise, so callers can skip the build with a reason.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.backends.onnxruntime.runner import OrtRunner
from workbench.errors import BackendUnavailableError

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# Real FP32 for the fp32 build (ORT's CUDA EP allows TF32 by default); inputs copied on
# the default stream so a synchronous run() is what the wall clock measures.
CUDA_OPTIONS = {"device_id": "0", "do_copy_in_default_stream": "1"}
_FAILED = re.compile(r"Failed to load (\S+?):")


def ort_cuda_unavailable_reason() -> str | None:
    """None when ONNX Runtime can run on CUDA here, else one line saying why not.

    Works without torch (then the session itself finds out whether a GPU is there).

    Example::

        if (why := ort_cuda_unavailable_reason()) is None:
            runner = make_ort_cuda_runner("model.onnx")
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime-gpu)"
    providers = ort.get_available_providers()
    if CUDA_PROVIDER not in providers:
        return (
            f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} (providers: {providers}); "
            "install onnxruntime-gpu in place of onnxruntime (docs/ort-gpu.md)"
        )
    try:
        import torch
    except ImportError:
        return None  # no torch to ask; the session reports a missing GPU itself
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def preload_cuda_libraries() -> list[str]:
    """Load CUDA/cuDNN from the nvidia-* pip packages (what torch installed) before a session;
    returns the libraries ORT's ``preload_dlls`` could not load (it prints, never raises)."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # ORT < 1.21: the libraries must be on LD_LIBRARY_PATH
        return []
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        for kwargs in _preload_calls(ort):
            preload(**kwargs)
    missing = sorted({Path(m).name for m in _FAILED.findall(text.getvalue())})
    if missing:
        log.warning("onnxruntime.preload_dlls could not load %s", ", ".join(missing))
    return missing


def _preload_calls(ort: Any) -> list[dict[str, Any]]:
    import importlib.util

    from onnxruntime.capi import build_and_package_info

    spec = importlib.util.find_spec("nvidia")
    roots = [Path(r) for r in spec.submodule_search_locations or []] if spec else []
    cuda_version = str(getattr(build_and_package_info, "cuda_version", ""))
    return preload_calls(cuda_version, Path(ort.__file__).parent.parent, roots)


def preload_calls(cuda_version: str, ort_site: Path, nvidia_roots: list[Path]) -> list[dict]:
    """Arguments for ``preload_dlls``: it looks for ``nvidia/`` beside ORT's own folder, so an
    ORT installed apart (``pip install --target``) is pointed at the nvidia-* lib folders."""
    major = cuda_version.split(".")[0]
    if not major.isdigit() or int(major) < 13 or any(r.parent == ort_site for r in nvidia_roots):
        return [{}]  # ORT's default search finds them (or the CUDA 12 per-package layout)
    calls = []
    for sub, flags in ((f"cu{major}", (True, False)), ("cudnn", (False, True))):
        lib = next((r / sub / "lib" for r in nvidia_roots if (r / sub / "lib").is_dir()), None)
        if lib is not None:
            calls.append({"cuda": flags[0], "cudnn": flags[1], "directory": str(lib)})
    return calls or [{}]


def make_ort_cuda_runner(
    model_path: str | Path, name: str = "ort-cuda", precision: str = "fp32"
) -> OrtCudaRunner:
    """An ``OrtCudaRunner`` on the first visible GPU (pick it with ``CUDA_VISIBLE_DEVICES``).

    The CPU provider stays as the fallback for nodes CUDA does not implement; which
    nodes fell back is logged and kept in ``runner.cpu_fallback`` (op type -> count).
    TF32 is off for ``fp32`` so it is a true FP32 baseline.

    Example::

        with make_ort_cuda_runner(info.onnx_path) as r:
            logits = r.infer(feed)["logits"]
    """
    reason = ort_cuda_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"ONNX Runtime CUDA backend unavailable: {reason}")
    missing = preload_cuda_libraries()
    runner = OrtCudaRunner(model_path, name, precision)
    if CUDA_PROVIDER not in runner.session_providers:
        runner.close()
        why = f"cannot load {', '.join(missing)}" if missing else "no usable GPU or CUDA library"
        raise BackendUnavailableError(
            f"ONNX Runtime CUDA backend unavailable: the session fell back to "
            f"{runner.session_providers} ({why}); install torch cu130 (its nvidia-* CUDA 13 and "
            "cuDNN 9 packages) or put those libraries on LD_LIBRARY_PATH (docs/ort-gpu.md)"
        )
    if runner.cpu_fallback:
        log.info("%s: nodes on the CPU provider: %s", name, runner.cpu_fallback)
    return runner


class OrtCudaRunner(OrtRunner):
    """``OrtRunner`` with CUDA provider options and a record of which nodes ran where."""

    def __init__(
        self,
        model_path: str | Path,
        name: str = "ort-cuda",
        precision: str = "fp32",
        optimized_model_path: str | Path | None = None,
    ) -> None:
        cuda = dict(CUDA_OPTIONS, use_tf32="0" if precision == "fp32" else "1")
        super().__init__(
            model_path,
            name=name,
            precision=precision,
            providers=[CUDA_PROVIDER, CPU_PROVIDER],
            optimized_model_path=optimized_model_path,
            provider_options=[cuda, {}],
            session_config={"session.record_ep_graph_assignment_info": "1"},
        )
        self.session_providers: list[str] = list(self._sess.get_providers())
        self.cpu_fallback: dict[str, int] = _nodes_on(self._sess, CPU_PROVIDER)


def _nodes_on(sess: object, provider: str) -> dict[str, int]:
    """Op type -> count of nodes ``provider`` runs ({} where this ORT cannot tell)."""
    info = getattr(sess, "get_provider_graph_assignment_info", None)
    if info is None:
        return {}
    ops: Counter[str] = Counter()
    for sub in info():
        if sub.ep_name == provider:
            ops.update(n.op_type for n in sub.get_nodes())
    return dict(ops)


@lru_cache(maxsize=1)
def eval_device() -> str:
    """``cuda`` where ONNX Runtime can run on a GPU (onnxruntime-gpu), else ``cpu``: scoring
    dozens of Q/DQ models over a whole split is where a GPU pays (the CUDA EP runs the Q/DQ
    graph as written, FP32 with TF32 off: the Q/DQ semantics, not INT8 kernels)."""
    return "cuda" if ort_cuda_unavailable_reason() is None else "cpu"


def open_eval_runner(model_path: str | Path, threads: int = 0, device: str = "") -> OrtRunner:
    """An FP32 runner on ``model_path`` for scoring, on ``device`` (default: ``eval_device()``),
    named after the file.

    Example::

        with open_eval_runner("q.onnx", device="cpu") as r:
            logits = r.infer(feed)["logits"]
    """
    name = Path(model_path).name
    if (device or eval_device()) == "cuda":
        return make_ort_cuda_runner(model_path, name, "fp32")
    return OrtRunner(model_path, name=name, intra_op_threads=threads)
