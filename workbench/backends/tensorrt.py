"""TensorRT runner (GPU): a thin re-export of ``workbench.tensorrt``, like ``ort.py`` for ORT.

Importing this module never imports ``tensorrt``; constructing a runner does, and raises
BackendUnavailableError when it is absent.
"""

from __future__ import annotations

from workbench.tensorrt import build_runner
from workbench.tensorrt.runner import TensorRTRunner

__all__ = ["TensorRTRunner", "build_runner"]
