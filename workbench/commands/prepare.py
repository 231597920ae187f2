"""``workbench prepare``: build (or reuse) the cached classifier and its ONNX export."""

from __future__ import annotations

import argparse

from workbench.commands._args import add_data_args, add_finetune_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="build the default classifier once (cached)")
    add_data_args(p)
    add_finetune_arg(p)
    p.add_argument("--max-train", type=int, help="use at most this many training samples")
    p.add_argument("--base-model", help="a Hugging Face encoder folder (default all-MiniLM-L6-v2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.backends.onnxruntime.export import export_onnx
    from workbench.backends.pytorch.prepare import prepare_classifier
    from workbench.data.datasets import load_labelled_file, load_rotten_tomatoes, make_splits
    from workbench.errors import ConfigError

    if args.max_train is not None and args.max_train < 1:
        raise ConfigError(f"--max-train {args.max_train}: use 1 or more training samples")
    data = (
        load_labelled_file(args.data, args.text_column, args.label_column)
        if args.data
        else load_rotten_tomatoes()
    )
    splits = make_splits(data)
    art = prepare_classifier(
        splits, base_model=args.base_model, finetune=args.finetune, max_train=args.max_train
    )
    info = export_onnx(art)
    print(f"model: {art.path}\nhead: {art.head_kind} {art.training}")
    print(f"onnx: {info.onnx_path} (ORT vs torch max-abs {info.max_abs_err:.2e})")
    return 0
