"""One calibration table, two INT8 backends: where their predictions part, measured on the CPU.

The ONNX Q/DQ model (what ORT's CPU EP and TensorRT run) and the CUDA INT8 build
(``QuantLinear`` in ``workbench/backends/pytorch/lowp.py``) consume the same table. Here both
run on the CPU over the test split: the Q/DQ model in ORT, and ``QuantLinear`` in its float64
reference mode (``simulate=True``: exactly the integer GEMM's result) with the rest of the
model in FP32 or in FP16 (the CUDA build's compute dtype). A Q/DQ model that quantizes only
what ``QuantLinear`` quantizes (the Linears: attention's activation x activation MatMuls kept
float) separates the two causes of a gap: mapping (which MatMuls are INT8) and the FP16
compute around the integer GEMMs. Prints a per-sample agreement matrix and writes
``benchmarks/results/int8_two_backends.json``.

Run::

    PYTHONPATH=. python benchmarks/int8_two_backends.py                  # gpu.toml's settings
    PYTHONPATH=. python benchmarks/int8_two_backends.py --method percentile-99.99 \\
        --exclude 'layer\\.5/output/dense' --append
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result

RESULT = Path(__file__).parent / "results" / "int8_two_backends.json"
VARIANTS = (
    "torch-fp32",  # the reference
    "torch-fp16",
    "ort-qdq",  # the workbench's Q/DQ model (ort-int8-static): every MatMul/Gemm INT8
    "ort-qdq-linears",  # the same, attention's activation x activation MatMuls kept float
    "ql-fp32",  # QuantLinear (float64 reference of the INT8 GEMM), rest FP32
    "ql-fp16",  # the same, rest FP16 (what the CUDA int8-static build computes)
    "ql-fp32-w16",  # rest FP32 with its float weights rounded through FP16 (a tiny nudge)
)
log = logging.getLogger("int8_two_backends")


@dataclass(frozen=True)
class TwoBackendSpec:
    """The model, its export and table, and the Q/DQ options both backends follow."""

    torch_model: str  # prepared classifier folder
    fp32_onnx: str  # the export the table was calibrated on
    table_file: str
    tokenizer_file: str
    max_length: int
    cache_dir: str
    per_channel: bool = True
    exclude: tuple[str, ...] = ()  # op types / node-name regexes kept float (as [calibration])
    threads: int = 0


def attention_matmuls(fp32_onnx: str | Path) -> list[str]:
    """MatMul/Gemm nodes without a constant weight (attention's Q.K^T and P.V)."""
    from workbench.backends.pytorch.lowp_map import linear_inputs, module_path_of_node
    from workbench.calibration.graph import QUANTIZED_OPS, load_onnx

    model = load_onnx(fp32_onnx, load_external_data=False)
    linear_acts = {(m, a) for m, acts in linear_inputs(fp32_onnx).items() for a in acts}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS
        and (module_path_of_node(n.name), n.input[0]) not in linear_acts
    ]


def _request(spec: TwoBackendSpec, backend: str, exclude: Sequence[str]):
    from workbench.backends.registry import BuildRequest, ModelFiles
    from workbench.results.spec import BuildSpec, CalibrationSpec

    files = ModelFiles(spec.fp32_onnx, spec.torch_model, spec.tokenizer_file, spec.max_length)
    return BuildRequest.of(
        BuildSpec(backend, "int8-static", "cpu", name=f"{backend}-int8-static"),
        CalibrationSpec(method="", per_channel=spec.per_channel, exclude=tuple(exclude)),
        files,
        table_file=spec.table_file,
        cache_dir=spec.cache_dir,
    )


def _runner(spec: TwoBackendSpec, variant: str):
    """An open Runner for one variant (see ``VARIANTS``)."""
    from workbench.backends.pytorch.backend import load_module, quantized_module
    from workbench.backends.pytorch.lowp import set_simulate
    from workbench.backends.pytorch.runner import TorchRunner

    threads = spec.threads or None
    if variant.startswith("ort-"):
        from workbench.backends.onnxruntime.backend import BACKEND
        from workbench.backends.onnxruntime.runner import OrtRunner

        exclude = list(spec.exclude)
        if variant == "ort-qdq-linears":
            exclude += [f"^{re.escape(n)}$" for n in attention_matmuls(spec.fp32_onnx)]
        art = BACKEND.build(_request(spec, "onnxruntime", exclude), None)
        return OrtRunner(art.model_path, name=variant, intra_op_threads=spec.threads)
    dtype = "fp16" if variant.endswith("fp16") else "fp32"
    module = load_module(spec.torch_model)
    if variant.endswith("-w16"):
        module = module.half().float()
    if variant.startswith("ql-"):
        module = set_simulate(
            quantized_module(module, _request(spec, "pytorch", spec.exclude)), True
        )
    return TorchRunner(module, name=variant, precision=dtype, threads=threads)


def two_backend_logits(
    spec: TwoBackendSpec,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    variants: Sequence[str] = VARIANTS,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Logits of every variant over ``texts`` (same length-sorted batches) and seconds each."""
    from workbench.data.tokenize import TextTokenizer
    from workbench.evaluate.accuracy import predict_logits

    tok = TextTokenizer(spec.tokenizer_file, spec.max_length)
    logits, seconds = {}, {}
    for v in variants:
        t0 = time.perf_counter()
        with _runner(spec, v) as runner:
            logits[v] = predict_logits(runner, texts, tok, batch_size=32, pairs=pairs)
        seconds[v] = time.perf_counter() - t0
        log.info("%s: %.1f s", v, seconds[v])
    return logits, seconds


def agreement_matrix(logits: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """Pairwise per-sample prediction agreement and mean |logit difference|."""
    names = list(logits)
    pred = {n: logits[n].argmax(axis=1) for n in names}
    agree = {a: {b: float(np.mean(pred[a] == pred[b])) for b in names} for a in names}
    dlogit = {a: {b: float(np.mean(np.abs(logits[a] - logits[b]))) for b in names} for a in names}
    return {"agreement": agree, "mean_abs_dlogit": dlogit}


def accuracies(logits: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    return {n: float(np.mean(v.argmax(axis=1) == labels)) for n, v in logits.items()}


def _workspace_spec(args: argparse.Namespace):
    """gpu.toml's experiment on this machine: workspace, table (cached) and the spec."""
    import tempfile

    from workbench.experiment.spec import load_experiment, shipped_experiment
    from workbench.experiment.workspace import Workspace
    from workbench.fileio import cache_root

    exp = load_experiment(shipped_experiment("gpu"))
    exclude, per_channel = tuple(args.exclude), not args.per_tensor
    cal = replace(exp.calibration, method=args.method, exclude=exclude, per_channel=per_channel)
    model = replace(exp.model, finetune=True) if args.finetune else exp.model
    ws = Workspace.from_experiment(replace(exp, calibration=cal, model=model, builds=()))
    root = str(cache_root() / "calibration_sets")
    with tempfile.TemporaryDirectory() as run_dir:
        out = ws.calibrate(run_dir, root, compare=False)
    spec = TwoBackendSpec(
        torch_model=ws.torch_model_dir,
        fp32_onnx=ws.export.onnx_path,
        table_file=out.table_file,
        tokenizer_file=ws.model.tokenizer_file,
        max_length=ws.exp.data.max_length,
        cache_dir=str(cache_root() / "builds"),
        per_channel=per_channel,
        exclude=exclude,
        threads=args.threads,
    )
    return ws, spec, cal


def _print(rows: dict, names: Sequence[str]) -> None:
    agree, dl = rows["agreement"], rows["mean_abs_dlogit"]
    w = max(len(n) for n in names) + 2
    print("agreement (upper) / mean |dlogit| (lower)")
    print(" " * w + "".join(f"{n:>{w}}" for n in names))
    for i, a in enumerate(names):
        cells = [
            f"{agree[a][b]:>{w}.4f}" if j >= i else f"{dl[a][b]:>{w}.4f}"
            for j, b in enumerate(names)
        ]
        print(f"{a:<{w}}" + "".join(cells))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="max")
    p.add_argument("--exclude", nargs="*", default=[])
    p.add_argument("--per-tensor", action="store_true")
    p.add_argument("--n-test", type=int, default=0, help="first N test samples (0: all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--finetune", action="store_true", help="fine-tuned classifier (GPU default)")
    p.add_argument("--append", action="store_true", help="add a row set to the JSON")
    add_overwrite_flag(p)
    args = p.parse_args(argv)
    before = load_average()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from workbench.provenance import collect_provenance

    ws, spec, cal = _workspace_spec(args)
    n = args.n_test or len(ws.texts)
    pairs = ws.pairs[:n] if ws.pairs else None
    logits, seconds = two_backend_logits(spec, ws.texts[:n], pairs, args.variants)
    mat = agreement_matrix(logits)
    acc = accuracies(logits, ws.labels[:n])
    names = list(logits)
    print(f"\nmethod={cal.method} per_channel={cal.per_channel} exclude={list(cal.exclude)} n={n}")
    _print(mat, names)
    print("accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    print("seconds:  " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    row = {
        "model": spec.torch_model,
        "head": "finetuned" if args.finetune else "logreg (CPU default)",
        "onnx": spec.fp32_onnx,
        "calibration": {k: v for k, v in asdict(cal).items() if k != "compare"},
        "n_test": n,
        "attention_matmuls": len(attention_matmuls(spec.fp32_onnx)),
        "accuracy": acc,
        "seconds": seconds,
        **mat,
    }
    old = json.loads(RESULT.read_text()) if args.append and RESULT.exists() else {"rows": []}
    prov = collect_provenance(seeds={"split": ws.exp.seed})
    doc = {
        **old,  # other keys (e.g. a calibration search written by hand) are kept
        "machine": asdict(prov),
        "rows": [*old["rows"], row],
    }
    save_result(RESULT, doc, before, force=args.force_overwrite)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
