"""``workbench init --model M --data F``: write a commented, runnable experiment file.

The file is made as a dict, written by ``tomli_w`` (so no argument can break the TOML or
inject a key), read back through the experiment loader and checked with the same pre-flight
checks ``workbench run`` makes (model, head, labels, columns, sizes) before it is written
atomically: a refused ``init`` leaves nothing on disk.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.results.spec import Experiment

HEADER = """\
# Experiment for {model_name}: run it with `workbench run {out_name}`.
# Relative paths are relative to this file. Every key is documented in docs/experiments.md.
# seed: splits, calibration sampling and bootstrap resamples.
"""
COMMENTS = {
    "model": "# HF classifier folder, or an .onnx file with its tokenizer folder and labels.",
    "data": (
        "# text_column / label_column name the file's columns; max_length in tokens (longer\n"
        "# texts are truncated, and the run warns when most are)."
    ),
    "calibration": (
        "# n: calibration samples, at most the calibration pool's distinct rows ({pool} here).\n"
        "# strategy: stratified (by label and token length), random, label, length.\n"
        "# method: max, entropy, mse, percentile-99.99 ... for static INT8; compare: side by\n"
        "# side in the report ([] skips); exclude: node-name regexes or op types kept in float."
    ),
    "evaluate": (
        "# n_test = 1000 would evaluate on at most 1000 test samples; shapes are the\n"
        "# (batch, sequence) latency shapes."
    ),
    "gate": (
        "# Builds: leave [[build]] tables out to get what makes sense on this machine (see\n"
        '# `workbench doctor`), or list them: [[build]] backend = "onnxruntime" (pytorch |\n'
        '# onnxruntime | tensorrt), device = "cpu", precision = "int8-static".\n'
        '# Gate: policy = "gate.toml" replaces the shipped policy (1-point accuracy drop, ...).'
    ),
}
DEFAULT_COMPARE = ["entropy", "percentile-99.99", "max", "mse"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a runnable experiment file for your model and data",
        description=(
            "Checks the model and data as `workbench run` would, then writes experiment.toml "
            "(or --out); run it with `workbench run`. Exit 2 (nothing written) on bad input."
        ),
    )
    p.add_argument("--model", required=True, help="HF classifier folder or .onnx file")
    p.add_argument("--tokenizer", help="folder with tokenizer.json (for an .onnx model)")
    p.add_argument("--labels", help="comma-separated output names in logit order (.onnx model)")
    p.add_argument("--data", help="one labelled file (split 60/20/20)")
    p.add_argument("--test", help="labelled evaluation file (instead of --data)")
    p.add_argument("--calibration", help="calibration pool file (with --test)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default="")
    p.add_argument("--label-column", default="label")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--out", default="experiment.toml", help="file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check everything, then write the file (atomically) or refuse with nothing written."""
    from workbench.errors import ConfigError
    from workbench.fileio import atomic_write_text

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite or --out another file")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file path such as {out}/exp.toml")
    if bool(args.data) == bool(args.test):
        raise ConfigError("give your data as --data FILE, or --test FILE [--calibration FILE]")
    _check_arguments(args)
    doc = experiment_document(args, out.resolve().parent)
    from workbench.experiment.engine import preflight_experiment

    pool = preflight_experiment(read_back(doc, out))  # run's own checks; raise on bad input
    doc["calibration"]["n"] = min(doc["calibration"]["n"], pool)
    text = render_document(doc, model_name=Path(args.model).name, out_name=out.name, pool=pool)
    read_back(doc, out, text=text)  # what we write reads back to the same experiment
    atomic_write_text(out, text)
    print(f"wrote {out}; run it with: workbench run {out}")
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse control characters in names (a newline in a column name is never a column)."""
    from workbench.errors import ConfigError

    for flag in ("text_column", "text_pair_column", "label_column", "labels"):
        value = getattr(args, flag) or ""
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(
                f"--{flag.replace('_', '-')} {value!r} contains a control character (newline, "
                "tab...); give the column name exactly as in the file's header"
            )


def experiment_document(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """The experiment as a TOML-shaped dict; paths relative to ``base`` (the file's folder)."""
    from workbench.experiment.rundir import safe_name
    from workbench.results.spec import CalibrationSpec, EvaluateSpec

    model: dict[str, Any] = {"path": _relative(Path(args.model), base)}
    if args.model.lower().endswith(".onnx"):
        from workbench.errors import ConfigError

        if not args.tokenizer or not args.labels:
            raise ConfigError("an .onnx model needs --tokenizer FOLDER and --labels a,b,...")
        model["tokenizer"] = _relative(Path(args.tokenizer), base)
        model["labels"] = [x.strip() for x in args.labels.split(",")]
    data: dict[str, Any] = {}
    if args.data:
        data["file"] = _relative(Path(args.data), base)
    else:
        data["test"] = _relative(Path(args.test), base)
        if args.calibration:
            data["calibration"] = _relative(Path(args.calibration), base)
    data["text_column"] = args.text_column
    if args.text_pair_column:
        data["text_pair_column"] = args.text_pair_column
    data["label_column"] = args.label_column
    data["max_length"] = args.max_length
    seq = args.max_length
    return {
        "name": safe_name(Path(args.model).stem),
        "seed": 0,
        "model": model,
        "data": data,
        "calibration": {
            "n": CalibrationSpec.n,
            "strategy": "stratified",
            "method": "max",
            "compare": list(DEFAULT_COMPARE),
            "per_channel": True,
            "exclude": [],
        },
        "evaluate": {"shapes": [[1, seq], [8, seq]], "iterations": EvaluateSpec.iterations},
        "gate": {"baseline": "ort-fp32", "candidates": ["ort-int8-static"]},
    }


def render_document(doc: dict[str, Any], model_name: str, out_name: str, pool: int) -> str:
    """TOML text: a comment header, top-level keys, then each table after its comment lines."""
    import tomli_w

    top = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    parts = [HEADER.format(model_name=_one_line(model_name), out_name=_one_line(out_name))]
    parts.append(tomli_w.dumps(top))
    for table, value in doc.items():
        if isinstance(value, dict):
            parts.append("\n" + COMMENTS[table].format(pool=pool) + "\n")
            parts.append(tomli_w.dumps({table: value}))
    return "".join(parts)


def read_back(doc: dict[str, Any], out: Path, text: str | None = None) -> Experiment:
    """``doc`` (or ``text``, which must parse back to ``doc``) through the experiment loader."""
    import tomllib

    from workbench.errors import ConfigError
    from workbench.experiment.spec import parse_experiment

    if text is not None and tomllib.loads(text) != doc:
        raise ConfigError(f"internal: the TOML for {out} does not read back as written")
    return parse_experiment(doc, base_dir=out.resolve().parent, source=str(out))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _relative(p: Path, base: Path) -> str:
    p = p.expanduser().resolve()
    try:
        return os.path.relpath(p, base)
    except ValueError:  # another drive
        return str(p)
