"""``workbench calibrate``: calibrate with several methods and compare them side by side.

Examples::

    workbench calibrate --run reports/<run-id> --methods entropy,percentile,max,mse
    workbench calibrate --model models/minilm-rt --calibration-set calibration_sets/<name>
    workbench calibrate --model model.onnx --tokenizer hf_model_dir --calibration-set cs \\
        --methods entropy --per-channel --exclude Gemm --no-compare

Writes into the run directory: ``calibration/<method>.json`` (table), ``.calib``
(TensorRT cache), ``.qdq.onnx`` (Q/DQ model) and ``calibration_comparison.json``,
which ``workbench report`` shows as a section.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

log = logging.getLogger(__name__)

METHOD_ALIASES = {"percentile": ["percentile-99.9", "percentile-99.99", "percentile-99.999"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="INT8 ranges by several methods: tables, TensorRT caches, Q/DQ models, comparison",
        description=(
            "One streamed statistics pass over the calibration set, then each method's ranges "
            "as a table, a TensorRT calibration cache and a Q/DQ ONNX model, each evaluated on "
            "the test split (accuracy, agreement with FP32, per-tensor SQNR)."
        ),
    )
    p.add_argument("--run", type=Path, help="a demo run directory: its model, set and test split")
    p.add_argument("--model", help="prepared model directory or an .onnx file")
    p.add_argument("--tokenizer", help="folder with tokenizer.json (for an .onnx --model)")
    p.add_argument("--max-length", type=int, default=128, help="for an .onnx --model")
    p.add_argument("--calibration-set", help="directory made by `workbench calibset`")
    p.add_argument(
        "--methods",
        default="entropy,percentile,max,mse",
        help="comma list: entropy, percentile (= 99.9,99.99,99.999), percentile-99.99, max, mse",
    )
    p.add_argument("--run-dir", type=Path, help="output directory (default: --run or new)")
    p.add_argument("--reports", default="reports", help="where a new run directory goes")
    p.add_argument("--data", help="labelled test file (default: Rotten Tomatoes test split)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--n-test", type=int, help="evaluate on at most this many test samples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="keep float: an op type (Gemm) or a node-name regex; repeatable",
    )
    p.add_argument("--sqnr-samples", type=int, default=128, help="test samples for SQNR")
    p.add_argument("--trt-version", default="10.16.1", help="TensorRT version in cache headers")
    p.add_argument("--no-compare", action="store_true", help="only tables, caches, Q/DQ models")
    p.set_defaults(func=run)


def parse_methods(text: str) -> list[str]:
    """``"entropy,percentile,max"`` -> the method names (``percentile`` = its three variants)."""
    from workbench.calibration.table import check_methods

    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        for m in METHOD_ALIASES.get(part, [part] if part else []):
            if m not in out:
                out.append(m)
    check_methods(out)
    return out


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    ctx = _context(args)
    from workbench.data.calibset import load_calibration_set

    calib = load_calibration_set(ctx["calibration_set"], ctx["tokenizer"])
    run_dir = Path(ctx["run_dir"])
    batches = calib.batches(ctx["tokenizer"], args.batch_size)
    if args.no_compare:
        return _tables_only(args, ctx, calib, batches, methods, run_dir)
    from workbench.experiment.compare import compare_methods

    texts, labels = ctx["test"]
    tok = ctx["tokenizer"]
    step = args.batch_size
    feeds = [tok.encode(texts[i : i + step]) for i in range(0, len(texts), step)]
    rec = compare_methods(
        ctx["onnx"], batches, feeds, labels, run_dir, methods,
        labels=ctx.get("labels", []), calibration_set_sha256=calib.manifest_sha256,
        test_set_sha256=ctx["test_sha"], per_channel=args.per_channel, exclude=args.exclude,
        sqnr_samples=args.sqnr_samples, trt_version=args.trt_version,
    )  # fmt: skip
    print(f"calibration set {calib.dir} ({rec.n_calibration_samples} samples), "
          f"test n={rec.n_test}, FP32 accuracy {rec.fp32_accuracy:.4f}")  # fmt: skip
    print(f"{'method':<20}{'accuracy':>10}{'agree':>8}{'SQNR dB':>9}{'clipped':>9}")
    for m in rec.methods:
        print(
            f"{m.method:<20}{m.accuracy:>10.4f}{m.agreement:>8.4f}{m.sqnr_db_mean:>9.1f}"
            f"{m.clipped_fraction_mean:>9.2e}"
        )
    print(f"best: {rec.best_method}\nwritten: {run_dir / 'calibration_comparison.json'}")
    return 0


def _tables_only(args, ctx, calib, batches, methods, run_dir: Path) -> int:
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate_methods
    from workbench.calibration.trt_cache import write_trt_cache

    tables, _ = calibrate_methods(ctx["onnx"], batches, methods, calib.manifest_sha256)
    for method, table in tables.items():
        base = run_dir / "calibration" / method
        table.save(f"{base}.json")
        write_trt_cache(table, f"{base}.calib", trt_version=args.trt_version)
        write_qdq_model(ctx["onnx"], table, f"{base}.qdq.onnx", args.per_channel, args.exclude)
        print(f"{method}: {base}.json, {base}.calib, {base}.qdq.onnx")
    return 0


def _context(args: argparse.Namespace) -> dict[str, Any]:
    """Model, tokenizer, calibration set, test split and output directory from the arguments."""
    ctx: dict[str, Any] = {}
    if args.run is not None:
        ctx.update(_from_run(args.run))
    model = args.model or ctx.get("model")
    if not model:
        raise ConfigError("pass --model (a prepared model directory or .onnx) or --run RUN_DIR")
    ctx.update(_model(model, args))
    ctx["calibration_set"] = args.calibration_set or ctx.get("calibration_set")
    if not ctx["calibration_set"]:
        raise ConfigError("pass --calibration-set DIR (build one with `workbench calibset`)")
    if "test" not in ctx and not args.no_compare:
        ctx.update(_test_split(args, ctx))
    if args.n_test is not None and "test" in ctx:
        from workbench.fileio import sha256_strings

        texts, labels = ctx["test"]
        texts, labels = texts[: args.n_test], labels[: args.n_test]
        ctx["test"] = (texts, labels)
        ctx["test_sha"] = sha256_strings(f"{t}\t{y}" for t, y in zip(texts, labels, strict=True))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    ctx["run_dir"] = args.run_dir or args.run or Path(args.reports) / f"{stamp}-calibrate"
    return ctx


def _from_run(run_dir: Path) -> dict[str, Any]:
    import pandas as pd

    from workbench.evaluate.accuracy import SAMPLES_FILE
    from workbench.results.records import load_run

    run = load_run(run_dir)
    out: dict[str, Any] = {"model": run.config.get("model_dir"), "labels": list(run.labels)}
    if run.calibration is not None:
        out["calibration_set"] = run.calibration.calibration_set
    samples = Path(run_dir) / SAMPLES_FILE
    if samples.is_file():
        df = pd.read_parquet(samples)
        out["test"] = (df["text"].tolist(), df["label"].to_numpy())
        out["test_sha"] = run.test_set_sha256
    return out


def _model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    from workbench.data.tokenize import TextTokenizer

    path = Path(model)
    if path.suffix == ".onnx":
        if not args.tokenizer:
            raise ConfigError("an .onnx --model needs --tokenizer DIR (with tokenizer.json)")
        tok = TextTokenizer.from_model_dir(args.tokenizer, args.max_length)
        return {"onnx": str(path), "tokenizer": tok}
    from workbench.backends.onnxruntime.export import export_onnx
    from workbench.backends.pytorch.artifact import load_artifact

    art = load_artifact(path)
    tok = TextTokenizer.from_model_dir(art.encoder_dir, art.max_length)
    return {"onnx": export_onnx(art).onnx_path, "tokenizer": tok, "model_labels": art.labels}


def _test_split(args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from workbench.data.datasets import (
        load_labelled_file,
        load_rotten_tomatoes,
        make_splits,
        test_set_sha256,
    )

    data = (
        load_labelled_file(args.data, args.text_column, args.label_column)
        if args.data
        else load_rotten_tomatoes()
    )
    want = ctx.get("model_labels")
    if want and list(want) != list(data.label_names):
        raise ConfigError(
            f"the model predicts labels {want}, the test data has {data.label_names}; "
            "pass the --data the model was prepared on"
        )
    test = make_splits(data).test
    return {
        "test": (list(test["text"]), np.asarray(test["label"])),
        "test_sha": test_set_sha256(test),
        "labels": list(data.label_names),
    }
