"""Streamed per-tensor activation statistics in bounded memory.

One FP32 ONNX Runtime session with the tensors to calibrate added as graph
outputs runs over the calibration set batch by batch; each tensor's values at
real (non-padded) token positions update a ``TensorStats``: min, max, abs-max and
a ``num_bins`` histogram of |x| over ``[0, R)``. ``R`` is a power of two strictly
above the abs-max seen so far; when a larger value arrives ``R`` doubles and pairs
of bins merge, which is exact, so the histogram does not depend on how the data
was batched (one batch of 64 gives the same counts as 64 batches of 1) and memory
never grows with the number of samples.

Example::

    stats = collect_statistics("model.onnx", calibset.batches(tokenizer, 16))
    amax = {name: compute_amax(s, "entropy") for name, s in stats.items()}
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from workbench.errors import CalibrationError, InputMismatchError, ModelError

log = logging.getLogger(__name__)

Feed = dict[str, np.ndarray]
MIN_RANGE = 2.0**-30  # histogram range floor; ranges only double from here
QUANTIZED_OPS = ("MatMul", "Gemm")
MASK_INPUT = "attention_mask"
_PROBE_SHAPES = ((2, 5), (3, 7))  # (batch, seq): co-prime so every axis kind is recognisable


@dataclass
class TensorStats:
    """Running statistics of one tensor: min/max/abs-max and a histogram of |x|."""

    name: str
    num_bins: int = 2048
    count: int = 0  # values seen (real token positions only)
    n_samples: int = 0  # sequences seen
    min: float = math.inf
    max: float = -math.inf
    hist_range: float = MIN_RANGE  # histogram covers [0, hist_range); a power of two
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.num_bins < 2 or self.num_bins & (self.num_bins - 1):
            raise CalibrationError(f"num_bins must be a power of two >= 2, got {self.num_bins}")
        if self.hist.size == 0:
            self.hist = np.zeros(self.num_bins, dtype=np.int64)

    @property
    def absmax(self) -> float:
        """Largest |x| seen (0.0 before any data)."""
        return max(-self.min, self.max, 0.0) if self.count else 0.0

    @property
    def bin_width(self) -> float:
        return self.hist_range / self.num_bins

    def edges(self) -> np.ndarray:
        """The ``num_bins + 1`` histogram bin edges."""
        return np.arange(self.num_bins + 1, dtype=np.float64) * self.bin_width

    def update(self, values: np.ndarray, n_samples: int = 0) -> None:
        """Add finite float values (any shape); non-finite ones raise CalibrationError."""
        flat = np.array(values, dtype=np.float32).ravel()  # a copy: _add works in place
        if flat.size == 0:
            self.n_samples += n_samples
            return
        vmin, vmax = float(flat.min()), float(flat.max())
        if not (math.isfinite(vmin) and math.isfinite(vmax)):
            raise CalibrationError(f"tensor {self.name!r} has NaN/Inf values; check the model")
        self._add(flat, vmin, vmax, n_samples)

    def _add(self, flat: np.ndarray, vmin: float, vmax: float, n_samples: int) -> None:
        """Fast path: ``flat`` is 1-D float32, finite, with known min/max (may be modified)."""
        self.grow_to(max(-vmin, vmax))
        n = self.num_bins
        np.abs(flat, out=flat)
        flat *= np.float32(n / self.hist_range)  # a power of two: exact
        idx = _scratch(flat.size)  # reused: no page faults, no allocator fragmentation
        np.copyto(idx, flat, casting="unsafe")  # truncation = floor for |x| >= 0
        self.hist += np.bincount(idx, minlength=n)[:n]
        self.min = min(self.min, vmin)
        self.max = max(self.max, vmax)
        self.count += int(flat.size)
        self.n_samples += n_samples

    def grow_to(self, amax: float) -> None:
        """Double the range until ``amax < hist_range``, merging bins exactly."""
        if amax < self.hist_range:
            return
        _, exp = math.frexp(amax)  # amax = m * 2**exp, 0.5 <= m < 1, so amax < 2**exp
        new_range = math.ldexp(1.0, exp)
        self.hist = _coarsen(self.hist, self.hist_range, new_range)
        self.hist_range = new_range

    def merge(self, other: TensorStats) -> None:
        """Fold another accumulator of the same tensor into this one (exact)."""
        if other.num_bins != self.num_bins:
            raise CalibrationError(f"cannot merge {self.name!r}: bin counts differ")
        target = max(self.hist_range, other.hist_range)
        self.hist = _coarsen(self.hist, self.hist_range, target)
        self.hist += _coarsen(other.hist, other.hist_range, target)
        self.hist_range = target
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.n_samples += other.n_samples


_SCRATCH = threading.local()


def _scratch(size: int) -> np.ndarray:
    """A per-thread index buffer of at least ``size`` (grown, never shrunk)."""
    buf = getattr(_SCRATCH, "idx", None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1 << 16), dtype=np.intp)
        _SCRATCH.idx = buf
    return buf[:size]


def _coarsen(hist: np.ndarray, from_range: float, to_range: float) -> np.ndarray:
    """Re-bin a histogram over [0, from_range) onto [0, to_range) (ranges: powers of two)."""
    factor = round(to_range / from_range)
    n = hist.size
    if factor <= 1:
        return hist.copy()
    out = np.zeros(n, dtype=np.int64)
    if factor >= n:
        out[0] = hist.sum()
    else:
        out[: n // factor] = hist.reshape(n // factor, factor).sum(axis=1)
    return out


def quantizable_tensors(onnx_path: str | Path) -> list[str]:
    """Activation inputs of MatMul/Gemm nodes (not weights or constants), in graph order.

    Example::

        names = quantizable_tensors("model.onnx")  # e.g. '/encoder/.../LayerNorm_output_0'
    """
    return _quantizable(_load_onnx(onnx_path, load_external_data=False))


def _quantizable(model) -> list[str]:  # type: ignore[no-untyped-def]
    constant = _constant_tensors(model)
    int_types = _non_float_tensors(model)
    out: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        for name in node.input[:2]:
            if name and name not in constant and name not in int_types and name not in seen:
                seen.add(name)
                out.append(name)
    return out


def _load_onnx(path: str | Path, load_external_data: bool = True):  # -> onnx.ModelProto
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX model {p} does not exist; export it first (workbench prepare)")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:  # onnx raises DecodeError/OSError variants for bad files
        raise ModelError(f"{p} is not a readable ONNX model ({exc})") from exc


def _constant_tensors(model) -> set[str]:  # type: ignore[no-untyped-def]
    """Initializers and everything computed only from them (weights, not activations)."""
    const = {i.name for i in model.graph.initializer}
    const.update(i.name for i in model.graph.sparse_initializer)
    graph_inputs = {i.name for i in model.graph.input} - const
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        ins = [i for i in node.input if i]
        derived = node.op_type == "Constant" or (ins and all(i in const for i in ins))
        if derived and not any(i in graph_inputs for i in ins):
            const.update(o for o in node.output if o)
    return const


def _non_float_tensors(model) -> set[str]:  # type: ignore[no-untyped-def]
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    out = set()
    for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.elem_type and t.elem_type not in floats:
            out.add(vi.name)
    return out


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

        with ActivationTap("model.onnx", ["t1", "t2"]) as tap:
            for act in tap.run(feed):
                print(act.name, act.values.size)
    """

    def __init__(
        self,
        onnx_path: str | Path,
        tensor_names: list[str] | None = None,
        max_tokens_per_run: int | None = None,
        intra_op_threads: int = 0,
        max_output_mb: float = 128.0,
    ) -> None:
        from workbench.backends.ort import OrtRunner

        model = _load_onnx(onnx_path)
        wanted = tensor_names if tensor_names is not None else _quantizable(model)
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
        with tempfile.TemporaryDirectory(prefix="wb-calib-") as tmp:
            path = Path(tmp) / "augmented.onnx"
            _augment(model, names, path)
            del model
            self._runner = OrtRunner(
                path, name="calibration-tap", intra_op_threads=intra_op_threads
            )
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


def _augment(model, names: list[str], path: Path) -> None:  # type: ignore[no-untyped-def]
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
    onnx.save(model, str(path))


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


def collect_statistics(
    onnx_path: str | Path,
    batches: Iterable[dict[str, np.ndarray]],
    tensor_names: list[str] | None = None,
    num_bins: int = 2048,
    *,
    max_output_mb: float = 128.0,
    max_tokens_per_run: int | None = None,
    intra_op_threads: int = 0,
) -> dict[str, TensorStats]:
    """One streamed pass over ``batches`` -> ``TensorStats`` per tensor (padding masked out).

    ``tensor_names`` defaults to ``quantizable_tensors(onnx_path)``. Batches are split into
    runs whose requested outputs take at most ``max_output_mb``; the statistics of one run
    are folded in on a second thread while ONNX Runtime computes the next, so at most two
    runs' outputs are alive: memory does not grow with the number of samples.

    Example::

        stats = collect_statistics(info.onnx_path, (tok.encode(t) for t in text_batches))
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    n_batches = 0
    tap = ActivationTap(
        onnx_path, tensor_names, max_tokens_per_run, intra_op_threads, max_output_mb
    )
    stats = {n: TensorStats(n, num_bins) for n in tap.tensor_names}

    def fold(chunk: _Chunk) -> None:
        for act in tap.activations(chunk):
            stats[act.name]._add(act.values, act.vmin, act.vmax, act.n_samples)

    with tap, ThreadPoolExecutor(max_workers=1, thread_name_prefix="wb-stats") as pool:
        pending: Future[None] | None = None
        for feed in batches:
            n_batches += 1
            for chunk in tap.chunks(feed):
                if pending is not None:
                    pending.result()  # re-raises a NaN/Inf error from the worker
                pending = pool.submit(fold, chunk)
        if pending is not None:
            pending.result()
        n_samples = tap.samples_seen
    if n_batches == 0 or n_samples == 0:
        raise CalibrationError(
            "the calibration set is empty (no batches); build one with `workbench calibset`"
        )
    log.info("collected statistics of %d tensors over %d samples", len(stats), n_samples)
    return stats
