"""The workbench ``Runner`` contract over Polygraphy's ``TrtRunner`` (TensorRT 10/11).

Polygraphy owns the engine, execution context, CUDA stream and device buffers; this class
adds what the contract promises: ``input_specs``, feeds validated before they reach
TensorRT, one-line errors, and outputs that later inferences cannot overwrite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.base import Feed, Runner, TensorSpec
from workbench.backends.tensorrt._trt import import_tensorrt, polygraphy_errors
from workbench.errors import EngineBuildError, InputMismatchError, ModelError


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine on the GPU through Polygraphy's ``TrtRunner``.

    Example::

        with TensorRTRunner("engine.plan", name="trt-fp16", precision="fp16") as r:
            logits = r.infer(feed)["logits"]
    """

    backend = "tensorrt"
    device = "cuda"

    def __init__(self, engine_path: str | Path, name: str = "trt", precision: str = "fp32") -> None:
        import_tensorrt()  # BackendUnavailableError with the install hint
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        path = Path(engine_path)
        if not path.is_file():
            raise ModelError(f"TensorRT engine {path} does not exist; build it first")
        self.name, self.precision = name, precision
        self._runner: Any = None
        with polygraphy_errors(
            EngineBuildError,
            f"{name}: cannot load {path} (engines load only with the TensorRT version and GPU "
            "that built them; rebuild it)",
        ):
            runner = TrtRunner(EngineFromBytes(path.read_bytes()), name=name)
            runner.activate()
        self._runner = runner
        meta = runner.get_input_metadata(use_numpy_dtypes=False)
        self._specs = [
            TensorSpec(
                n,
                np.dtype(m.dtype.numpy()).name,
                tuple(d if isinstance(d, int) and d >= 0 else None for d in m.shape),
            )
            for n, m in meta.items()
        ]

    @property
    def input_specs(self) -> list[TensorSpec]:
        return list(self._specs)

    def _infer(self, feed: Feed) -> dict[str, np.ndarray]:
        shape = next(iter(feed.values())).shape
        with polygraphy_errors(
            InputMismatchError,
            f"{self.name}: TensorRT refused inputs of shape {shape} (outside the engine's "
            "optimization profile? rebuild with a wider one)",
        ):
            out = self._runner.infer(feed, check_inputs=False)  # validated by Runner.infer
        return {k: np.array(v, copy=True) for k, v in out.items()}  # Polygraphy reuses buffers

    def close(self) -> None:
        if self._runner is not None and self._runner.is_active:
            self._runner.deactivate()
        self._runner = None
