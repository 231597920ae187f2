"""``workbench cache --size | --clear``: how much the content-addressed cache holds; empty it."""

from __future__ import annotations

import argparse
import sys

from workbench.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="show the cache's size by kind, or clear it",
        description=(
            "The cache ($WORKBENCH_CACHE, default ~/.cache/workbench) holds classifiers, ONNX "
            "exports, Q/DQ models and engines once; runs refer to them. --clear removes only "
            "the folders the workbench made; a later run rebuilds what it needs."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--size", action="store_true", help="print the cache's size by kind")
    what.add_argument("--clear", action="store_true", help="remove the cache's entries")
    p.add_argument("--yes", "-y", action="store_true", help="clear without asking")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.experiment.cachedir import KINDS, cache_sizes, clear_cache, human
    from workbench.fileio import cache_root

    root = cache_root()
    sizes = cache_sizes(root)
    if args.size:
        print(f"cache: {root}")
        for kind, n in sorted(sizes.items(), key=lambda kv: -kv[1]):
            print(f"  {human(n):>9}  {kind:<12} {KINDS.get(kind, '')}".rstrip())
        print(f"  {human(sum(sizes.values())):>9}  total")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"workbench cache --clear would remove {root}'s entries; not a terminal, so "
                "nothing was asked or removed: pass --yes to confirm"
            )
        total = sum(n for k, n in sizes.items() if k in KINDS)
        answer = input(f"remove {human(total)} of cache entries under {root}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 0
    print(f"removed {human(clear_cache(root))} from {root}")
    return 0
