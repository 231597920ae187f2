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
    from workbench.experiment.prepare import PrepareOptions, prepare_default_model

    opts = PrepareOptions(
        data_file=args.data or "",
        text_column=args.text_column,
        label_column=args.label_column,
        base_model=args.base_model,
        finetune=args.finetune,
        max_train=args.max_train,
    )
    art, info = prepare_default_model(opts)
    print(f"model: {art.path}\nhead: {art.head_kind} {art.training}")
    print(f"onnx: {info.onnx_path} (ORT vs torch max-abs {info.max_abs_err:.2e})")
    return 0
