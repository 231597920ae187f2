"""Command-line options several subcommands share, defined once."""

from __future__ import annotations

import argparse


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data / --text-column / --label-column: your labelled file instead of Rotten Tomatoes."""
    p.add_argument("--data", help="your CSV/JSONL/Parquet file instead of Rotten Tomatoes")
    p.add_argument("--text-column", default="text", help="column holding the text")
    p.add_argument("--label-column", default="label", help="column holding the label")


def add_finetune_arg(p: argparse.ArgumentParser) -> None:
    """--finetune: fine-tune the encoder instead of fitting a head on frozen embeddings."""
    p.add_argument(
        "--finetune",
        action="store_true",
        default=None,
        help="fine-tune the encoder (default on a GPU; slow on a CPU)",
    )
