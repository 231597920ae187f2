"""``workbench init --model M --data F``: write a commented, runnable experiment file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

TEMPLATE = """\
# Experiment for {model_name}: run it with `workbench run {out_name}`.
# Relative paths are relative to this file. Every key is documented in docs/experiments.md.
name = "{name}"
seed = 0                 # splits, calibration sampling and bootstrap resamples

[model]
{model_block}
[data]
{data_block}text_column = "{text_column}"
{pair_line}label_column = "{label_column}"
max_length = {max_length}         # tokens; longer texts are truncated (the run warns when most are)

[calibration]
n = 512                  # calibration samples (fewer if the pool is smaller, with a warning)
strategy = "stratified"  # by label and token length; or random, label, length
method = "max"           # max (best measured), entropy, mse, percentile-99.99 ... for static INT8
compare = ["entropy", "percentile-99.99", "max", "mse"]   # side by side in the report; [] skips
per_channel = true       # per-output-channel weight scales
exclude = []             # node-name patterns (regex) or op types kept in float

# Builds: leave them out to get what makes sense on this machine (see `workbench doctor`), or
# list them, e.g.
# [[build]]
# backend = "onnxruntime"   # pytorch | onnxruntime | tensorrt
# device = "cpu"            # cpu | cuda
# precision = "int8-static" # fp32 tf32 fp16 bf16 int8-static int8-dynamic int8-explicit ...

[evaluate]
# n_test = 1000          # evaluate on at most this many test samples
shapes = [[1, {seq}], [8, {seq}]]   # (batch, sequence) latency shapes
iterations = 50

[gate]
baseline = "ort-fp32"
candidates = ["ort-int8-static"]
# policy = "gate.toml"   # default: the shipped policy (1-point accuracy drop, 97% agreement, ...)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a runnable experiment file for your model and data",
        description="Writes experiment.toml (or --out); run it with `workbench run`.",
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
    from workbench.errors import ConfigError
    from workbench.experiment.spec import load_experiment
    from workbench.fileio import atomic_write_text

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite or --out another file")
    if bool(args.data) == bool(args.test):
        raise ConfigError("give your data as --data FILE, or --test FILE [--calibration FILE]")
    base = out.resolve().parent
    rel = lambda p: _relative(Path(p), base)  # noqa: E731
    model_lines = [f'path = "{rel(args.model)}"']
    if args.model.lower().endswith(".onnx"):
        if not args.tokenizer or not args.labels:
            raise ConfigError("an .onnx model needs --tokenizer FOLDER and --labels a,b,...")
        names = ", ".join(f'"{x.strip()}"' for x in args.labels.split(","))
        model_lines += [f'tokenizer = "{rel(args.tokenizer)}"', f"labels = [{names}]"]
    if args.data:
        data_block = f'file = "{rel(args.data)}"      # split 60/20/20 (train unused)\n'
    else:
        data_block = f'test = "{rel(args.test)}"\n'
        if args.calibration:
            data_block += f'calibration = "{rel(args.calibration)}"\n'
    pair = args.text_pair_column
    text = TEMPLATE.format(
        model_name=Path(args.model).name,
        out_name=out.name,
        name=Path(args.model).stem.replace('"', ""),
        model_block="\n".join(model_lines) + "\n",
        data_block=data_block,
        text_column=args.text_column,
        pair_line=f'text_pair_column = "{pair}"\n' if pair else "",
        label_column=args.label_column,
        max_length=args.max_length,
        seq=args.max_length,
    )
    atomic_write_text(out, text)
    load_experiment(out)  # what we wrote must load; a bad path or option fails here
    print(f"wrote {out}; run it with: workbench run {out}")
    return 0


def _relative(p: Path, base: Path) -> str:
    p = p.expanduser().resolve()
    try:
        return os.path.relpath(p, base)
    except ValueError:  # another drive
        return str(p)
