"""The experiment spec: what to validate (model, data, calibration, builds, evaluation, gate).

Frozen dataclasses, saved into every run record so a run says exactly what it ran.
``workbench.experiment.spec`` reads and writes them as TOML with field-level errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.results.policy import GatePolicy

DEVICES = ("cpu", "cuda")  # device kinds; backends and precisions: their registries
CALIBRATORS = ("workbench", "ort")
GRAPHS = ("plain", "fused")  # fused: MultiHeadAttention + BiasGelu (backends/onnxruntime/fusion)
STRATEGIES = ("random", "label", "length", "stratified")
COMPARE_METHODS = ("entropy", "percentile-99.99", "max", "mse")


@dataclass(frozen=True)
class ModelSpec:
    """One of: the shipped classifier (``default``), a Hugging Face folder, or an .onnx file."""

    default: bool = False
    path: str = ""  # HF sequence-classification folder or .onnx file (absolute once loaded)
    tokenizer: str = ""  # folder with tokenizer.json (required for .onnx)
    labels: tuple[str, ...] = ()  # output names of an .onnx model, in logit order
    finetune: bool | None = None  # default model: fine-tune the encoder (None: on a GPU only)
    max_train: int | None = None  # default model: cap on training samples

    @property
    def kind(self) -> str:
        """ "default", "onnx" or "hf"."""
        if self.default:
            return "default"
        return "onnx" if self.path.lower().endswith(".onnx") else "hf"


@dataclass(frozen=True)
class DataSpec:
    """Labelled data: one file split deterministically, or separate test/calibration files."""

    file: str = ""  # one file -> stratified train/calibration/test splits (60/20/20)
    test: str = ""  # evaluation file
    calibration: str = ""  # calibration pool file (defaults to the test file's complement)
    text_column: str = "text"
    text_pair_column: str = ""  # second text of sentence-pair tasks
    label_column: str = "label"
    max_length: int = 128
    unlabeled: str = ""  # unlabelled production text (same text column): evidence without labels
    disagreement_labels: str = ""  # disagreements.csv of a run, with its label column filled in

    @property
    def shipped(self) -> bool:
        """True when no file is named: the shipped Rotten Tomatoes data."""
        return not (self.file or self.test)


@dataclass(frozen=True)
class CalibrationSpec:
    """How INT8 ranges are found: set size and strategy, method, weight granularity, exclusions."""

    n: int = 512
    strategy: str = "stratified"
    method: str = "max"  # best agreement on both datasets measured (docs/search.md)
    compare: tuple[str, ...] = COMPARE_METHODS  # methods compared side by side; () skips
    calibrator: str = "workbench"  # or "ort" (ONNX Runtime's calibrator)
    per_channel: bool = True
    exclude: tuple[str, ...] = ()  # op types or node-name regexes kept in float (every backend)
    seed: int | None = None  # sampling seed of the calibration set (None: the experiment's)
    fp8_method: str = "max"  # FP8 e4m3 ranges: max, percentile-*, mse on the FP8 grid


@dataclass(frozen=True)
class BuildSpec:
    """One build: (backend, device, precision) plus backend options."""

    backend: str
    precision: str = "fp32"
    device: str = "cpu"
    name: str = ""  # filled with a default name when loaded
    compile: bool = False  # torch.compile (PyTorch CUDA)
    cuda_graphs: bool = False  # capture CUDA graphs per shape (PyTorch CUDA)
    graph: str = "plain"  # "fused": ORT CPU FP32 / INT8 on the fused BERT graph (model_type bert)
    # accuracy-recovery options of ORT CPU dynamic INT8 (backends/onnxruntime/recovery.py)
    recovery: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvaluateSpec:
    """Test-set size, reference build and latency measurement settings."""

    n_test: int | None = None  # evaluate on at most this many test samples
    shapes: tuple[tuple[int, int], ...] = ((1, 128), (8, 128))  # (batch, seq) latency shapes
    iterations: int = 50
    warmup: int = 3
    max_seconds: float = 20.0  # per shape
    threads: int = 0  # intra-op threads on CPU (0: all cores)
    reference: str = ""  # build fidelity is measured against ("" = first FP32 build)


@dataclass(frozen=True)
class GateSpec:
    """Which builds are gated against which baseline, under which policy."""

    enabled: bool = True
    policy_file: str = ""  # where the policy came from ("" = inline or shipped default)
    policy: GatePolicy | None = None  # resolved when loaded
    baseline: str = "ort-fp32"
    candidates: tuple[str, ...] = ("ort-int8-static",)


@dataclass(frozen=True)
class Experiment:
    """A whole experiment; ``workbench run FILE.toml`` runs it.

    Example::

        exp = load_experiment("experiment.toml")
        run, run_dir = run_experiment(exp)
    """

    name: str = "experiment"
    seed: int = 0
    quick: bool = False
    model: ModelSpec = field(default_factory=lambda: ModelSpec(default=True))
    data: DataSpec = field(default_factory=DataSpec)
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    builds: tuple[BuildSpec, ...] = ()  # () = the builds that make sense on this machine
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec)
    gate: GateSpec = field(default_factory=GateSpec)
    source: str = ""  # the file it was read from
