"""TensorRT 10's implicit INT8 calibration: our calibration set as Polygraphy's data loader.

TensorRT calibrates a dynamic-shape network at one fixed shape (the calibration profile's
opt shape), and Polygraphy's ``Calibrator`` stops quietly on a batch that does not match
the network. So every batch is re-shaped here, before the build, to exactly the model's
own inputs (names and dtypes read from the ONNX graph: DistilBERT/RoBERTa have no
``token_type_ids``) at one (batch, sequence) shape; after the build ``check_served``
refuses an engine that saw fewer batches than the set holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from workbench.errors import CalibrationError, InputMismatchError

Feed = dict[str, np.ndarray]


def model_inputs(onnx_path: str | Path) -> dict[str, np.dtype]:
    """The ONNX model's graph inputs, in order, with their NumPy dtypes."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return {
        i.name: np.dtype(tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        for i in graph.input
        if i.name not in inits
    }


class CalibrationLoader:
    """Fixed-shape calibration batches of the model's inputs; an iterable Polygraphy re-reads.

    Every sample appears at least once: rows are padded to the longest row of the set
    (``input_ids`` with the set's own pad id, other inputs with 0) and the last batch is
    topped up by wrapping around to the first rows.

    Example::

        loader = CalibrationLoader(calib.feeds(), model_inputs("model.onnx"))
        loader.shape  # (16, 48)
    """

    input_metadata: Any = None  # Polygraphy sets this; the batches already match the network

    def __init__(self, feeds: Callable[[], Iterable[Feed]], inputs: dict[str, np.dtype]) -> None:
        rows: dict[str, list[np.ndarray]] = {name: [] for name in inputs}
        batch = 0
        for feed in feeds():
            missing = [n for n in inputs if n not in feed]
            if missing:
                raise InputMismatchError(
                    f"calibration feeds lack the model's input(s) {missing} (they have "
                    f"{sorted(feed)}); was the calibration set made for this model?"
                )
            batch = max(batch, len(feed[next(iter(inputs))]))
            for name in inputs:
                rows[name].extend(np.asarray(feed[name]))
        n = len(next(iter(rows.values()), []))
        if n == 0:
            raise CalibrationError("the calibration set yielded no samples; is it empty?")
        seq = max(len(r) for r in rows[next(iter(inputs))])
        self.shape = (batch, seq)
        pad_id = _pad_id(rows)
        self.batches: list[Feed] = []
        for start in range(0, n, batch):
            idx = [(start + i) % n for i in range(batch)]
            feed = {}
            for name, dtype in inputs.items():
                arr = np.full(self.shape, pad_id if name == "input_ids" else 0, dtype=dtype)
                for j, i in enumerate(idx):
                    arr[j, : len(rows[name][i])] = rows[name][i]
                feed[name] = arr
            self.batches.append(feed)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def sha256(self) -> str:
        """Hash of every batch (names, dtypes, shapes, bytes): part of the engine's cache key."""
        from workbench.backends.base import feeds_sha256

        return feeds_sha256(self.batches)

    def check_served(self, served: int) -> None:
        """CalibrationError when TensorRT calibrated on fewer batches than the set holds."""
        if served != len(self.batches):
            raise CalibrationError(
                f"TensorRT calibrated on {served} of {len(self.batches)} batches (see the "
                "log above): the INT8 ranges would not be trustworthy"
            )


def _pad_id(rows: dict[str, list[np.ndarray]]) -> int:
    """The set's own pad id: what ``input_ids`` holds where ``attention_mask`` is 0 (else 0)."""
    for ids, mask in zip(rows.get("input_ids", []), rows.get("attention_mask", []), strict=False):
        if (mask == 0).any():
            return int(ids[mask == 0][0])
    return 0


def make_calibrator(trt: ModuleType, loader: CalibrationLoader, cache: Path) -> Any:
    """Polygraphy's ``IInt8EntropyCalibrator2`` over ``loader`` (TensorRT 10 only; gone in 11)."""
    from polygraphy.backend.trt import Calibrator

    return Calibrator(loader, cache=str(cache), BaseClass=trt.IInt8EntropyCalibrator2)
