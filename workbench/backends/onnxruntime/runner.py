"""ONNX Runtime runner (CPU here; CUDA provider when onnxruntime-gpu is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.backends.base import Feed, Runner, TensorSpec
from workbench.errors import BackendUnavailableError, ModelError

_ORT_DTYPES = {
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
}


# ORT graph optimizers a CPU session skips. SkipLayerNormFusion folds Add + LayerNormalization
# into com.microsoft.SkipLayerNormalization, whose CPU kernel (ORT 1.32) is 6-10x slower than the
# two ops (128 x 384 floats, 2 threads: 129 us vs ~25 us): on the default classifier it cost ORT
# FP32 7 % / 3 % and the fused static INT8 build 7 % / 15 % (batch 1 / 8, side by side).
# Every CPU session (FP32 reference included) runs without it, so ratios stay like for like.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


class OrtRunner(Runner):
    """Runs an ONNX model with ONNX Runtime.

    Example::

        with OrtRunner("model.onnx", name="ort-fp32") as r:
            logits = r.infer(feed)["logits"]
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        name: str = "ort",
        precision: str = "fp32",
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        optimized_model_path: str | Path | None = None,
        provider_options: list[dict[str, str]] | None = None,
        session_config: dict[str, str] | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"ONNX model {path} does not exist; export or quantize it first")
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailableError(
                f"ONNX Runtime provider(s) {missing} unavailable (have "
                f"{ort.get_available_providers()}); install onnxruntime-gpu for CUDA"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.log_severity_level = 3
        if optimized_model_path is not None:
            opts.optimized_model_filepath = str(optimized_model_path)
        for key, value in (session_config or {}).items():
            opts.add_session_config_entry(key, value)
        cpu = providers[0].startswith("CPU")
        try:
            self._sess: ort.InferenceSession = ort.InferenceSession(
                str(path),
                sess_options=opts,
                providers=providers,
                provider_options=provider_options,
                disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS) if cpu else None,
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; all mean "bad model"
            raise ModelError(
                f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}; "
                "is it a valid, complete ONNX file?"
            ) from exc
        self.name = name
        self.precision = precision
        self.model_path = path
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self._specs = [
            TensorSpec(i.name, _ORT_DTYPES.get(i.type, "float32"), tuple(i.shape))
            for i in self._sess.get_inputs()
        ]
        self._outputs = [o.name for o in self._sess.get_outputs()]

    @property
    def input_specs(self) -> list[TensorSpec]:
        return self._specs

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def _infer(self, feed: Feed) -> dict[str, np.ndarray]:
        values = self._sess.run(self._outputs, feed)
        return dict(zip(self._outputs, values, strict=True))

    def close(self) -> None:
        del self._sess


def open_ort_runner(model_path: str | Path, intra_op_threads: int = 0) -> OrtRunner:
    """An FP32 CPU runner named after the file: the ``open_runner`` that calibration's
    activation tap takes from its caller (calibration sits below the backends).

    Example::

        stats = collect_statistics("model.onnx", batches, open_runner=open_ort_runner)
    """
    return OrtRunner(model_path, name=Path(model_path).name, intra_op_threads=intra_op_threads)
