"""One way for the benchmarks to ask ``workbench.evaluate.isolated`` to time a build.

``LatencySpec`` takes a ``BuildRequest`` and an ``Artifact`` (the backend registry opens the
runner); the benchmarks know a backend, a model path and a precision. Everything is passed by
keyword so a new field with a default (or a reordering) does not break them again.

Example::

    out = measure_isolated(isolated_spec("onnxruntime", "model.onnx", "tokenizer.json", "fp32",
                                         [(1, 128)], iterations=40, threads=2))
"""

from __future__ import annotations

from workbench.evaluate.isolated import LatencySpec


def isolated_spec(
    backend: str,
    model: str,
    tokenizer_file: str,
    precision: str,
    shapes: list[tuple[int, int]],
    *,
    iterations: int,
    threads: int,
    warmup: int = 5,
    max_seconds_per_shape: float = 30.0,
) -> LatencySpec:
    """A CPU ``LatencySpec`` for an already-built ``model`` (ONNX file or PyTorch classifier)."""
    from workbench.backends.registry import Artifact, BuildRequest, ModelFiles
    from workbench.results.spec import BuildSpec, CalibrationSpec

    request = BuildRequest.of(
        BuildSpec(backend, precision, "cpu", name=f"{backend}-{precision}"),
        CalibrationSpec(method=""),
        ModelFiles(
            fp32_onnx=model if backend == "onnxruntime" else "",
            torch_model=model if backend == "pytorch" else "",
            tokenizer_file=tokenizer_file,
            max_length=max(seq for _, seq in shapes),
        ),
    )
    return LatencySpec(
        request=request,
        artifact=Artifact(model_path=model, model_sha256="", detail=precision),
        shapes=list(shapes),
        iterations=iterations,
        warmup=warmup,
        max_seconds_per_shape=max_seconds_per_shape,
        threads=threads,
    )
