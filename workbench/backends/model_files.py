"""Read a model's weight files once, in the pre-flight checks, so a damaged model is a one-line
ModelError (exit 2) before any calibration set, export or build — not a traceback from deep in
the export.

Config and tokenizer problems are caught by ``pytorch.hf.inspect_hf_folder`` and
``onnxruntime.inspect.inspect_onnx``; this module opens the *weights*: every tensor of every
``*.safetensors`` file (header and bytes), a ``pytorch_model*.bin`` through ``torch.load``, and
an ``.onnx`` file through the ONNX checker (a truncated protobuf, or one cut at a field boundary
that drops initializers or nodes, fails there).

Example::

    check_model_files("hf", "models/my-sst2-bert")   # ModelError if a weight file is damaged
    check_model_files("onnx", "model.onnx")
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import ModelError

_RESAVE = "save the model again (model.save_pretrained(folder)) or restore the file"


def check_model_files(kind: str, path: str | Path) -> None:
    """Open and read the weights of the model at ``path`` (``kind`` "hf" or "onnx")."""
    if kind == "hf":
        check_hf_weights(path)
    elif kind == "onnx":
        check_onnx_file(path)


def check_hf_weights(folder: str | Path) -> None:
    """Read every tensor of an HF folder's weight files; ModelError naming the damaged file."""
    root = Path(folder)
    safetensors = sorted(root.glob("*.safetensors"))
    for f in safetensors:
        _read_safetensors(f)
    if not safetensors:
        for f in sorted(root.glob("pytorch_model*.bin")):
            _read_torch_bin(f)


def _read_safetensors(file: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        import torch  # noqa: F401  (bf16/fp8 tensors need the torch framework)

        framework = "pt"
    except ImportError:
        framework = "numpy"
    name = ""
    try:
        with safe_open(str(file), framework=framework) as sf:
            names = list(sf.keys())
            if not names:
                raise ModelError(f"{file} holds no tensors; {_RESAVE}")
            for name in names:  # one tensor at a time: bounded memory
                sf.get_tensor(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        where = f" (tensor {name!r})" if name else ""
        raise ModelError(
            f"{file} is damaged or truncated{where}: {_first_line(exc)}; {_RESAVE}"
        ) from exc


def _read_torch_bin(file: Path) -> None:
    import pickle
    import zipfile

    try:
        import torch
    except ImportError:
        return  # loading a .bin needs torch anyway; the backend says so when it is needed
    try:
        torch.load(str(file), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        raise ModelError(f"{file} is damaged or truncated: {_first_line(exc)}; {_RESAVE}") from exc


def check_onnx_file(path: str | Path) -> None:
    """Parse an .onnx file in full (with its external data) and run the ONNX checker on it."""
    import onnx

    p = Path(path)
    try:
        onnx.checker.check_model(str(p), full_check=False)
        model = onnx.load(str(p), load_external_data=True)
    except Exception as exc:
        raise ModelError(
            f"{p} is damaged or truncated ({type(exc).__name__}: {_first_line(exc)}); "
            "export the model again or restore the file"
        ) from exc
    for init in model.graph.initializer:
        expected = _expected_bytes(init)
        if expected is not None and init.raw_data and len(init.raw_data) != expected:
            raise ModelError(
                f"{p}: initializer {init.name!r} holds {len(init.raw_data)} bytes, its shape needs "
                f"{expected} (a damaged file); export the model again or restore the file"
            )


def _expected_bytes(init: object) -> int | None:
    import numpy as np
    import onnx

    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError):
        return None
    return int(np.prod(list(init.dims), dtype=np.int64)) * itemsize  # type: ignore[attr-defined]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
