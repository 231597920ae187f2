"""PyTorch runner: the FP32 reference on CPU, and FP32/TF32/FP16/BF16 builds on CUDA.

On a GPU the runner can also ``torch.compile`` the model (Inductor fuses the
element-wise work) and capture one CUDA graph per fixed (batch, seq) shape, which
removes the per-kernel launch cost that dominates small batches. Reduced precision
is applied by casting the weights (``cast="cast"``, the default: measured faster
than autocast on an H200, see docs/gpu.md) or by ``torch.autocast``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import Feed, Runner, TensorSpec
from workbench.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
CAST_MODES = ("cast", "autocast")
# Our own CUDA-graph capture replaces Inductor's, so only modes without cudagraphs.
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
GRAPH_WARMUP = 3


@dataclass
class _Graph:
    """One captured CUDA graph with its static input buffers and output."""

    graph: Any  # torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


def model_input_names(model: nn.Module) -> tuple[str, ...]:
    """The token inputs (of ``INPUTS``) that ``model.forward`` accepts, in ``INPUTS`` order;
    a model that says which it uses (``input_names``, e.g. the HF wrapper) decides itself."""
    declared = getattr(model, "input_names", None)
    if isinstance(declared, tuple) and "input_ids" in declared:
        return tuple(n for n in INPUTS if n in declared)
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and not any(
        n in params for n in INPUTS
    ):
        return INPUTS
    names = tuple(n for n in INPUTS if n in params)
    if "input_ids" not in names:
        raise ConfigError(
            f"{type(model).__name__}.forward takes no input_ids; the torch runner needs a "
            "token classifier (input_ids, attention_mask[, token_type_ids] -> logits)"
        )
    return names


def attention_implementation(model: nn.Module) -> str:
    """The Hugging Face attention implementation inside ``model`` ("sdpa", "eager", ...)."""
    for mod in model.modules():
        cfg = getattr(mod, "config", None)
        impl = getattr(cfg, "_attn_implementation", None)
        if impl:
            return str(impl)
    return "n/a"


def _raise_recompile_limit(torch: Any, limit: int = 64) -> None:
    """One compiled code object serves every runner and shape: let it hold them all.

    Past Dynamo's default limit (8) it would silently fall back to eager.
    """
    cfg = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, key) and getattr(cfg, key) < limit:
            setattr(cfg, key, limit)


class TorchRunner(Runner):
    """Runs a classifier ``nn.Module`` (input_ids, attention_mask[, token_type_ids] -> logits).

    Works with the workbench's ``MeanPoolClassifier`` and any Hugging Face
    ``*ForSequenceClassification`` model (its ``.logits`` output is taken).

    Example::

        with TorchRunner(load_torch_classifier(art)) as r:
            logits = r.infer(feed)["logits"]
        gpu = TorchRunner(model, "torch-fp16-graphs", "fp16", "cuda", cuda_graphs=True)
    """

    backend = "pytorch"

    def __init__(
        self,
        model: nn.Module,
        name: str = "torch-fp32",
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
        *,
        cast: str = "cast",
        compile_mode: str | None = None,
        cuda_graphs: bool = False,
        pad_to: tuple[int, int] | None = None,
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(
                "the PyTorch backend needs torch: pip install -e '.[torch]'"
            ) from exc
        self._check_options(torch, precision, device, cast, compile_mode, cuda_graphs)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._dtype = {
            "fp32": torch.float32,
            "tf32": torch.float32,
            "fp16": torch.float16,
            "bf16": torch.bfloat16,
        }[precision]
        self._input_names = model_input_names(model)
        weights_dtype = self._dtype if cast == "cast" else torch.float32
        self._model = model.to(device=device, dtype=weights_dtype).eval()
        self.name = name
        self.precision = precision
        self.device = device
        self.cast = cast
        self.compile_mode = compile_mode
        self.cuda_graphs = cuda_graphs
        self.attn_implementation = attention_implementation(self._model)
        self.pad_to = pad_to
        self.eval_batch_size = pad_to[0] if pad_to else 32
        self._fn: Any = self._forward_eager
        self.compile_scope = ""
        if compile_mode is not None:
            _raise_recompile_limit(torch)
            self._fn, self.compile_scope = _compiled(
                torch, self._model, self._forward_eager, compile_mode
            )
        self._graphs: dict[tuple[int, int, int], _Graph] = {}
        self._capture_streams: dict[int, Any] = {}

    @staticmethod
    def _check_options(
        torch: Any,
        precision: str,
        device: str,
        cast: str,
        compile_mode: str | None,
        cuda_graphs: bool,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} unknown; use one of {PRECISIONS}")
        if cast not in CAST_MODES:
            raise ConfigError(f"cast {cast!r} unknown; use one of {CAST_MODES}")
        if compile_mode is not None and compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"compile_mode {compile_mode!r} unknown; use one of {COMPILE_MODES} (CUDA graphs "
                "come from cuda_graphs=True, not from Inductor)"
            )
        on_cuda = device.startswith("cuda")
        if on_cuda and not torch.cuda.is_available():
            raise BackendUnavailableError(
                "CUDA requested but torch sees no GPU; run on a GPU machine or use --device cpu"
            )
        if not on_cuda and (precision == "tf32" or cuda_graphs):
            raise ConfigError(
                "tf32 and cuda_graphs need a CUDA device; pass device='cuda' or drop them"
            )

    # ----------------------------------------------------------------- contract
    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(n, "int64", ("batch", "sequence")) for n in self._input_names]

    def _infer(self, feed: Feed) -> dict[str, np.ndarray]:
        if self.pad_to is None or feed["input_ids"].shape[1] > self.pad_to[1]:
            out = self.run_device(self.to_device(feed))
            return {"logits": out.float().cpu().numpy()}
        rows, chunks = len(feed["input_ids"]), []
        for start in range(0, rows, self.pad_to[0]):
            part = {k: v[start : start + self.pad_to[0]] for k, v in feed.items()}
            n = len(part["input_ids"])
            out = self.run_device(self.to_device(pad_feed(part, *self.pad_to)))
            chunks.append(out[:n].float().cpu().numpy())  # a copy: the graph output is reused
        return {"logits": np.concatenate(chunks)}

    def close(self) -> None:
        self.reset_graphs()
        self._model = None  # type: ignore[assignment]
        self._fn = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    # ----------------------------------------------------------- device-level API
    @property
    def model(self) -> nn.Module:
        """The (cast, device-resident) module this runner runs."""
        return self._model

    def to_device(self, feed: Feed) -> dict[str, torch.Tensor]:
        """Copy a validated feed to the runner's device (non-blocking from pinned memory)."""
        torch = self._torch
        return {
            k: torch.from_numpy(np.ascontiguousarray(feed[k])).to(self.device, non_blocking=True)
            for k in self._input_names
        }

    def run_device(self, tensors: dict[str, torch.Tensor], slot: int = 0) -> torch.Tensor:
        """Logits for device-resident inputs; no host copies, no synchronisation.

        With ``cuda_graphs`` the inputs are copied into the graph of their shape
        (captured on first use; ``slot`` picks an independent copy for use on another
        stream) and the returned tensor is that graph's static output: read it before
        the next replay of the same shape and slot.
        """
        torch = self._torch
        with torch.inference_mode(), self._precision_context():
            if not self.cuda_graphs:
                return self._fn(tensors)
            ids = tensors["input_ids"]
            entry = self._graph(int(ids.shape[0]), int(ids.shape[1]), slot)
            for k, buf in entry.inputs.items():
                if tensors[k] is not buf:
                    buf.copy_(tensors[k], non_blocking=True)
            entry.graph.replay()
            return entry.output

    def graph_inputs(self, batch: int, seq: int, slot: int = 0) -> dict[str, torch.Tensor]:
        """The static input buffers of the (batch, seq, slot) graph, capturing it if needed.

        Writing a feed into these and calling ``run_device`` with them skips the copy.
        """
        if not self.cuda_graphs:
            raise ConfigError(f"{self.name} does not use CUDA graphs (cuda_graphs=False)")
        with self._torch.inference_mode(), self._precision_context():
            return self._graph(batch, seq, slot).inputs

    def prepare_shape(self, batch: int, seq: int, slots: int = 1) -> None:
        """Compile / capture ahead of timing so that first-call costs stay out of the numbers."""
        torch = self._torch
        ones = {
            n: torch.ones((batch, seq), dtype=torch.int64, device=self.device)
            for n in self._input_names
        }
        if "token_type_ids" in ones:
            ones["token_type_ids"].zero_()
        for slot in range(slots if self.cuda_graphs else 1):
            self.run_device(ones, slot)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def reset_graphs(self) -> None:
        """Drop captured graphs (and their private memory pools)."""
        self._graphs.clear()

    # --------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _precision_context(self) -> Iterator[None]:
        """TF32 matmuls for the tf32 build only (restored after), autocast when asked."""
        torch = self._torch
        if not self.device.startswith("cuda"):
            with self._autocast():
                yield
            return
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        saved = (matmul.allow_tf32, cudnn.allow_tf32)
        matmul.allow_tf32 = cudnn.allow_tf32 = self.precision == "tf32"
        try:
            with self._autocast():
                yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = saved

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cast != "autocast" or self._dtype == self._torch.float32:
            return contextlib.nullcontext()
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        return self._torch.autocast(device_type, dtype=self._dtype)

    def _forward_eager(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self._model(**tensors)
        if isinstance(out, self._torch.Tensor):
            return out
        logits = getattr(out, "logits", None)
        if logits is None:
            logits = out[0]
        return logits

    def _graph(self, batch: int, seq: int, slot: int) -> _Graph:
        key = (batch, seq, slot)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(batch, seq, slot)
            self._graphs[key] = entry
            log.debug("%s: captured CUDA graph for batch %d seq %d slot %d", self.name, *key)
        return entry

    def _capture(self, batch: int, seq: int, slot: int) -> _Graph:
        """Warm up, then capture one forward at a fixed shape on the slot's own stream.

        One capture stream per slot matters: cuBLAS keeps one workspace per stream
        and a graph bakes its pointer in, so graphs captured on a shared stream race
        on that workspace when replayed concurrently (seen: 4-stream replays disagreed).
        """
        torch = self._torch
        inputs = {
            n: torch.zeros((batch, seq), dtype=torch.int64, device=self.device)
            for n in self._input_names
        }
        inputs["input_ids"].fill_(100)  # a real token id
        if "attention_mask" in inputs:
            inputs["attention_mask"].fill_(1)
            if seq > 1:  # one masked position: Hugging Face drops an all-ones mask in eager
                # warm-up but keeps it while capturing, and a per-layer compiled graph would
                # then recompile inside the capture (not permitted)
                inputs["attention_mask"][:, -1] = 0
        stream = self._capture_streams.get(slot)
        if stream is None:
            stream = self._capture_streams[slot] = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(GRAPH_WARMUP):
                self._fn(inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            output = self._fn(inputs)
        return _Graph(graph, inputs, output)

    def describe(self) -> list[str]:
        """Human-readable build settings (for a BuildResult's notes)."""
        notes = [f"precision={self.precision}"]
        if self.precision in ("fp16", "bf16"):
            notes.append("weights cast" if self.cast == "cast" else "fp32 weights + autocast")
        if self.compile_mode:
            notes.append(f"torch.compile(mode={self.compile_mode!r}) {self.compile_scope}")
        else:
            notes.append("eager")
        if self.pad_to:
            b, s = self.pad_to
            notes.append(f"evaluation batches padded to {b} x {s} (one graph shape)")
        notes.append("CUDA graph per (batch, seq)" if self.cuda_graphs else "no CUDA graphs")
        notes.append(f"attention={self.attn_implementation}; torch {self._torch.__version__}")
        return notes


def layer_stack(model: nn.Module) -> list[nn.Module] | None:
    """The model's stack of identical transformer layers (the longest ``nn.ModuleList`` whose
    children share one class: BERT ``encoder.layer``, DistilBERT ``transformer.layer``,
    ModernBERT ``layers`` ...), or None.

    ALBERT has no such stack: one shared layer group runs N times. Its outermost one-item
    ``nn.ModuleList`` is returned then, so compiling that group compiles every layer.
    """
    from torch import nn

    best: list[nn.Module] | None = None
    shared: list[nn.Module] | None = None
    for mod in model.modules():  # outermost first
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        kids = list(mod)
        if len(kids) == 1:
            shared = shared or kids
        elif len({type(k) for k in kids}) == 1 and (best is None or len(kids) > len(best)):
            best = kids
    return best if best is not None else shared


def _compiled(torch: Any, model: nn.Module, forward: Any, mode: str) -> tuple[Any, str]:
    """Regional compilation (each layer of the stack, one compiled graph serves all) where
    the model has a layer stack: compiles in a fraction of the time, runs as fast as a
    whole-model compile (measured on BERT-base, H200); else the whole forward."""
    stack = layer_stack(model)
    if stack is None:
        return torch.compile(forward, mode=mode, dynamic=False), "(whole model)"
    for layer in stack:
        layer.compile(mode=mode, dynamic=False)
    return forward, f"(per layer: {len(stack)} x {type(stack[0]).__name__})"


def pad_feed(feed: Feed, batch: int, seq: int) -> Feed:
    """``feed`` padded to (batch, seq): masked zero tokens on the right, extra rows copied
    from the first (rows are independent, so the real rows' logits do not change)."""
    out: Feed = {}
    for k, v in feed.items():
        b, s = v.shape
        padded = np.zeros((batch, seq), dtype=v.dtype)
        padded[:b, :s] = v
        padded[b:, :s] = v[0]
        out[k] = padded
    return out
