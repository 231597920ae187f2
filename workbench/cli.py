"""``workbench`` command line: a thin shell over the library.

Each subcommand lives in ``workbench/commands/<name>.py`` exposing
``register(subparsers) -> None`` (adds its parser and sets ``func=run``) and
``run(args) -> int``. Command modules import nothing heavy at module level, so
``workbench --help`` works with only the core installed. Errors from the
workbench print one line and exit with the error's code (2 bad input, 3 backend
unavailable); a failed gate exits 1, an inconclusive one 4. Anything else is a bug: it exits
70 with one line naming the log file that holds the traceback (the run's folder when one was
created, else the cache's ``logs/``); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from workbench import __version__
from workbench.errors import WorkbenchError, noted_output_dir
from workbench.interrupts import (
    check_interrupt,
    handling_interrupts,
    interrupted,
    settle_interrupts,
)

EXIT_INTERNAL = 70  # EX_SOFTWARE: an unexpected exception (a bug), never the gate's 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
CRASH_LOG = "workbench-crash-{stamp}-{pid}.log"

COMMANDS = (
    "run",
    "init",
    "demo",
    "search",
    "prepare",
    "calibset",
    "calibrate",
    "sweep",
    "report",
    "gate",
    "doctor",
    "cache",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Is the INT8 (or FP16) build accurate enough, and how much faster is it?",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"workbench.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"workbench.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script; returns the exit code.

    A Ctrl-C at any moment is exit 130 with one "interrupted" line, even one that a library
    swallowed (``workbench.interrupts``); files being written then are not published.
    """
    with handling_interrupts(ignore_after=argv is None):
        try:
            code = _main(argv)
        except KeyboardInterrupt:  # while parsing, or while an error line was printed
            print("interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        if settle_interrupts() and code != EXIT_INTERRUPTED:
            print("interrupted", file=sys.stderr)  # a Ctrl-C some library swallowed
            code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED and argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End an interrupted process without interpreter teardown: an extension module whose
    import the Ctrl-C cut short can crash there (a fatal error instead of exit 130). Every
    ``finally`` has run by now, so temp files are gone; only the std streams need flushing."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    # Offline by design: nothing may reach a model hub; no per-file progress bars from datasets.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading bars
    parser = build_parser()
    args = parser.parse_args(argv)
    # Only the workbench's own logger speaks at INFO; third-party chatter stays at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("workbench").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return _dispatch(args, argv)


def _dispatch(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run the command; map every way it can end to one exit code and at most one line."""
    try:
        code = int(args.func(args))
        check_interrupt()
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if interrupted():  # what a Ctrl-C broke (an import cut short, say): not a bug, no error
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        return _report_error(exc, argv)


def _report_error(exc: Exception, argv: Sequence[str] | None) -> int:
    """One line for ``exc``: bad input (its exit code), an OS refusal (2) or a bug (70)."""
    if isinstance(exc, WorkbenchError):
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError):  # a file or folder the OS refused: bad input, not a crash
        logging.getLogger("workbench").debug("operating-system error", exc_info=True)
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    log = write_crash_log(argv)
    what = _one_line(str(exc)) or "(no message)"
    print(f"internal error: {type(exc).__name__}: {what}; details in {log}", file=sys.stderr)
    return EXIT_INTERNAL


def write_crash_log(argv: Sequence[str] | None) -> str:
    """Write the current exception's traceback to a file and return its path.

    Into the folder of the run/search/sweep under way when one was created, else the cache's
    ``logs/`` folder, else the temp folder.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = CRASH_LOG.format(stamp=stamp, pid=os.getpid())
    body = (
        f"workbench {__version__} {stamp}\nargv: {list(sys.argv[1:] if argv is None else argv)}"
        f"\n\n{traceback.format_exc()}"
    )
    folders = [noted_output_dir(), _cache_logs(), tempfile.gettempdir()]
    for folder in folders:
        if not folder:
            continue
        path = Path(folder) / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        except OSError:
            continue
        return str(path)
    return "(nowhere: no folder was writable)"


def _cache_logs() -> str | None:
    from workbench.fileio import cache_root

    try:
        return str(cache_root() / "logs")
    except WorkbenchError:
        return None


def os_error_message(exc: OSError) -> str:
    """One line naming the path, what the OS said, and what to do about it."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f" {paths}" if paths else ""
    return _one_line(
        f"cannot use{where}: {what}; check that the path exists, is the right kind "
        "(file or folder) and is writable, or choose another"
    )


def _one_line(text: str) -> str:
    return " ".join(text.strip().splitlines())


if __name__ == "__main__":
    sys.exit(main())
