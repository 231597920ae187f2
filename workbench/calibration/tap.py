"""ActivationTap: an FP32 ONNX Runtime session with chosen tensors as extra outputs.

It yields, run by run, each tensor's values at real (non-padded) token positions.
Batches are split into runs whose outputs fit ``max_output_mb``; two tiny probe runs
learn which axes of each tensor follow batch and sequence, so ``attention_mask`` can
drop padded positions (including both axes of attention probabilities).

The runner comes from the caller (``open_runner``, e.g.
``workbench.backends.onnxruntime.runner.open_ort_runner``): calibration sits below the
backends, so it receives a runner factory rather than importing one.

Example::

    with ActivationTap("model.onnx", ["t1", "t2"], open_runner=open_ort_runner) as tap:
        for act in tap.run(feed):
            print(act.name, act.values.size)
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import numpy as np

from workbench.calibration.graph import load_onnx, quantizable_from_model
from workbench.errors import CalibrationError, InputMismatchError

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
MASK_INPUT = "attention_mask"
_PROBE_SHAPES = ((2, 5), (3, 7))  # (batch, seq): co-prime so every axis kind is recognisable


class TapRunner(Protocol):
    """What the tap needs of a runner: ``workbench.backends.base.Runner`` satisfies it."""

    @property
    def input_specs(self) -> Sequence[Any]:  # items with a ``name``
        ...

    def infer(self, feed: Feed) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


OpenRunner = Callable[[Path, int], TapRunner]
"""Opens a runner on an ONNX file with ``intra_op_threads`` (0: the library's default)."""
R = TypeVar("R", bound=TapRunner)


def open_tapped(
    model: Any,
    names: Sequence[str],
    open_runner: Callable[[Path, int], R],
    intra_op_threads: int = 0,
) -> R:
    """A runner (from ``open_runner``) on ``model`` (an ``onnx.ModelProto``) with ``names`` added
    as graph outputs. ``model`` is consumed (cleared once written) so only the runner holds
    the weights.

    Example::

        runner = open_tapped(load_onnx("m.onnx"), ["t1"], open_ort_runner)
    """
    with tempfile.TemporaryDirectory(prefix="wb-calib-") as tmp:
        path = Path(tmp) / "tapped.onnx"
        _augment(model, list(names), path)
        model.Clear()
        return open_runner(path, intra_op_threads)


@dataclass(frozen=True)
class _Layout:
    """Which axes of a tensor are batch / sequence, so padded positions can be masked."""

    batch_axis: int | None = None
    batch_repeat: int = 1  # batch axis holds batch*k rows, batch-major (e.g. batch*heads)
    seq_axes: tuple[int, ...] = ()
    flat_axis: int | None = None  # an axis of size batch*seq (tokens flattened)

    @property
    def maskable(self) -> bool:
        return self.flat_axis is not None or (self.batch_axis is not None and bool(self.seq_axes))


def _classify(s1: tuple[int, ...], s2: tuple[int, ...]) -> _Layout:
    (b1, q1), (b2, q2) = _PROBE_SHAPES
    batch_axis, repeat, seq, flat = None, 1, [], None
    if len(s1) != len(s2):
        return _Layout()
    for ax, (v1, v2) in enumerate(zip(s1, s2, strict=True)):
        if v1 == v2:
            continue
        if (v1, v2) == (q1, q2):
            seq.append(ax)
        elif (v1, v2) == (b1 * q1, b2 * q2):
            flat = ax
        elif v1 % b1 == 0 and v2 % b2 == 0 and v1 // b1 == v2 // b2 and batch_axis is None:
            batch_axis, repeat = ax, v1 // b1
        else:
            return _Layout()  # unknown dependence on the input shape: do not mask
    return _Layout(batch_axis, repeat, tuple(seq), flat)


@dataclass(frozen=True)
class _Chunk:
    """Outputs of one ONNX Runtime run and where its rows sit in the calibration set."""

    outs: dict[str, np.ndarray]
    mask: np.ndarray | None
    batch: int
    offset: int


@dataclass(frozen=True)
class Activation:
    """Values of one tensor at real token positions of one run (1-D float32, finite)."""

    name: str
    values: np.ndarray
    vmin: float
    vmax: float
    n_samples: int


class ActivationTap:
    """An FP32 session exposing chosen tensors as outputs; yields their unpadded values.

    Example::

        with ActivationTap("model.onnx", ["t1"], open_runner=open_ort_runner) as tap:
            for act in tap.run(feed):
                print(act.name, act.values.size)
    """

    def __init__(
        self,
        onnx_path: str | Path,
        tensor_names: list[str] | None = None,
        max_tokens_per_run: int | None = None,
        intra_op_threads: int = 0,
        max_output_mb: float = 64.0,
        *,
        open_runner: OpenRunner,
    ) -> None:
        model = load_onnx(onnx_path)
        wanted = tensor_names if tensor_names is not None else quantizable_from_model(model)
        names = list(dict.fromkeys(wanted))
        if not names:
            raise CalibrationError(f"{onnx_path}: no tensors to calibrate (no MatMul/Gemm inputs)")
        known = {o for n in model.graph.node for o in n.output}
        known.update(i.name for i in model.graph.input)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputMismatchError(
                f"{onnx_path} has no tensor(s) {unknown[:3]}{'...' if len(unknown) > 3 else ''}; "
                "pass names from quantizable_tensors() of this model"
            )
        self.tensor_names = names
        self.max_tokens_per_run = max_tokens_per_run
        self.max_output_mb = max_output_mb
        self.samples_seen = 0
        self._runner = open_tapped(model, names, open_runner, intra_op_threads)
        self.input_names = [s.name for s in self._runner.input_specs]
        self._layouts: dict[str, _Layout] | None = None
        self._probe_shapes: dict[str, tuple[int, ...]] = {}

    def __enter__(self) -> ActivationTap:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._runner.close()

    def run(self, feed: Feed) -> Iterator[Activation]:
        """Run one tokenizer batch; yields each tensor's values at real tokens, run by run."""
        for chunk in self.chunks(feed):
            yield from self.activations(chunk)

    def chunks(self, feed: Feed) -> Iterator[_Chunk]:
        """Run one tokenizer batch as ONNX Runtime runs of bounded output size."""
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise InputMismatchError(
                f"calibration batch has inputs {sorted(feed)}, the model needs {self.input_names} "
                f"(missing {missing}); does the calibration set's tokenizer match the model?"
            )
        feed = {k: np.asarray(feed[k]) for k in self.input_names if k in feed} | (
            {MASK_INPUT: np.asarray(feed[MASK_INPUT])} if MASK_INPUT in feed else {}
        )
        first = np.asarray(feed[self.input_names[0]])
        if first.ndim != 2 or first.shape[0] == 0:
            raise InputMismatchError(
                f"calibration input {self.input_names[0]!r} has shape {first.shape}; "
                "expected a non-empty [batch, sequence] token array"
            )
        if self._layouts is None:
            self._layouts = self._probe(feed)
        rows = self._rows_per_run(first.shape[1])
        for start in range(0, first.shape[0], rows):
            yield self._run_chunk({k: v[start : start + rows] for k, v in feed.items()})

    def _rows_per_run(self, seq: int) -> int:
        if self.max_tokens_per_run is not None:
            return max(1, self.max_tokens_per_run // max(1, seq))
        if not self._probe_shapes:
            return max(1, 512 // max(1, seq))
        (b1, s1), _ = _PROBE_SHAPES
        per_row = 0.0  # bytes of requested outputs per batch row at this sequence length
        for name, shape in self._probe_shapes.items():
            layout = self._layouts.get(name, _Layout()) if self._layouts else _Layout()
            if layout == _Layout():  # nothing recognised: assume up to quadratic in seq
                per_row += 4.0 * math.prod(shape) / b1 * (seq / s1) ** 2
                continue
            n = 1.0
            for ax, v in enumerate(shape):
                if ax == layout.batch_axis:
                    n *= layout.batch_repeat
                elif ax in layout.seq_axes or ax == layout.flat_axis:
                    n *= seq
                else:
                    n *= v
            per_row += 4.0 * n
        return max(1, int(self.max_output_mb * 2**20 // max(per_row, 1.0)))

    def _run_chunk(self, feed: Feed) -> _Chunk:
        mask = feed.get(MASK_INPUT)
        if mask is not None and mask.ndim == 2:
            width = int(np.max(np.nonzero(mask.any(axis=0))[0], initial=-1)) + 1
            if 0 < width < mask.shape[1] and all(v.ndim == 2 for v in feed.values()):
                feed = {k: v[:, :width] for k, v in feed.items()}  # drop all-padding columns
                mask = feed[MASK_INPUT]
        outs = self._runner.infer({k: feed[k] for k in self.input_names})
        batch = int(np.asarray(feed[self.input_names[0]]).shape[0])
        offset = self.samples_seen
        self.samples_seen += batch
        return _Chunk({n: outs[n] for n in self.tensor_names}, mask, batch, offset)

    def activations(self, chunk: _Chunk) -> Iterator[Activation]:
        """Values at real tokens of each tensor of one run; NaN/Inf raise CalibrationError."""
        for name in self.tensor_names:
            arr = np.asarray(chunk.outs.pop(name))
            if arr.dtype.kind != "f":
                continue
            layout = self._layouts.get(name, _Layout()) if self._layouts else _Layout()
            vals = _valid_values(arr, chunk.mask, layout)
            vmin = float(vals.min()) if vals.size else 0.0
            vmax = float(vals.max()) if vals.size else 0.0
            if not (math.isfinite(vmin) and math.isfinite(vmax)):
                sample = _locate_non_finite(arr, layout, chunk.offset)
                raise CalibrationError(
                    f"tensor {name!r} has NaN/Inf at calibration sample {sample}; "
                    "inspect that input or the model's numerics"
                )
            yield Activation(name, vals.astype(np.float32, copy=False), vmin, vmax, chunk.batch)

    def token_rows(self, chunk: _Chunk) -> Iterator[tuple[str, np.ndarray]]:
        """Each tensor of one run as ``[real tokens, channels]`` (last axis kept), for
        per-channel statistics; a tensor whose last axis follows batch or sequence is
        returned unmasked, flattened to ``[-1, last dim]``."""
        for name in self.tensor_names:
            arr = np.asarray(chunk.outs.pop(name))
            if arr.dtype.kind != "f" or arr.ndim == 0:
                continue
            layout = self._layouts.get(name, _Layout()) if self._layouts else _Layout()
            last = arr.ndim - 1
            if last in (layout.batch_axis, layout.flat_axis, *layout.seq_axes):
                layout = _Layout()
            vals = _valid_values(arr, chunk.mask, layout)
            yield name, vals.reshape(-1, arr.shape[-1])

    def _probe(self, feed: Feed) -> dict[str, _Layout]:
        """Run two tiny synthetic shapes to learn which output axes follow batch and sequence."""
        shapes = []
        for b, s in _PROBE_SHAPES:
            probe = {
                k: np.full((b, s), np.asarray(feed[k]).flat[0], dtype=np.asarray(feed[k]).dtype)
                for k in self.input_names
            }
            if MASK_INPUT in probe:
                probe[MASK_INPUT][:] = 1
            try:
                out = self._runner.infer(probe)
            except Exception as exc:  # a static-shape model rejects the probe: no masking then
                log.warning("shape probe failed (%s); padded positions will not be masked", exc)
                return {}
            shapes.append({n: tuple(np.asarray(out[n]).shape) for n in self.tensor_names})
        self._probe_shapes = shapes[0]
        layouts = {n: _classify(shapes[0][n], shapes[1][n]) for n in self.tensor_names}
        if MASK_INPUT in feed:
            blind = [n for n, lay in layouts.items() if not lay.maskable and lay.batch_axis is None]
            if blind:
                log.debug("no token axes found for %d tensor(s), e.g. %s", len(blind), blind[0])
        return layouts


def _augment(model, names: list[str], path: Path) -> None:
    """Add ``names`` as graph outputs (typed from shape inference where known) and save."""
    import onnx
    from onnx import TensorProto, helper

    infos = {vi.name: vi for vi in model.graph.value_info}
    if any(n not in infos for n in names):
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            infos = {vi.name: vi for vi in inferred.graph.value_info}
        except Exception:  # best-effort: an untyped output is declared float
            log.debug("shape inference failed; calibrated outputs declared float")
    present = {o.name for o in model.graph.output}
    for name in names:
        if name in present:
            continue
        vi = infos.get(name)
        if vi is not None and vi.type.tensor_type.elem_type:
            elem = vi.type.tensor_type.elem_type
        else:
            elem = TensorProto.FLOAT
        model.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    # weights go to a side file tensor by tensor: no second in-memory copy of the model
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".weights")


def _valid_values(arr: np.ndarray, mask: np.ndarray | None, layout: _Layout) -> np.ndarray:
    """Values of ``arr`` at real token positions (all values when no mask/layout applies)."""
    if mask is None or not layout.maskable or bool(mask.all()):
        return arr.reshape(-1)
    m = mask.astype(bool)
    b, s = m.shape
    nd = arr.ndim
    if layout.flat_axis is not None:
        if arr.shape[layout.flat_axis] != b * s:
            return arr.reshape(-1)
        shape = [1] * nd
        shape[layout.flat_axis] = b * s
        valid = m.reshape(shape)
    else:
        ba = int(layout.batch_axis)  # type: ignore[arg-type]
        if arr.shape[ba] != b * layout.batch_repeat:
            return arr.reshape(-1)
        rows = np.repeat(m, layout.batch_repeat, axis=0) if layout.batch_repeat > 1 else m
        valid = np.ones([1] * nd, dtype=bool)
        for sa in layout.seq_axes:
            if arr.shape[sa] != s:
                return arr.reshape(-1)
            shape = [1] * nd
            shape[ba], shape[sa] = rows.shape[0], s
            valid = valid & rows.reshape(shape)
    return arr[np.broadcast_to(valid, arr.shape)]


def _locate_non_finite(arr: np.ndarray, layout: _Layout, offset: int) -> str:
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size == 0:
        return "unknown"
    if layout.batch_axis is not None:
        return str(offset + int(bad[0][layout.batch_axis]) // layout.batch_repeat)
    return f"in {offset}..{offset + arr.shape[0] - 1} (batch axis unknown)"
