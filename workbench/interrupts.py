"""Ctrl-C that is never swallowed: the CLI's SIGINT handler records the interrupt as well as
raising ``KeyboardInterrupt``.

Python delivers a signal's ``KeyboardInterrupt`` wherever the main thread happens to be; when that
is a weakref callback or a ``__del__`` (garbage collection during matplotlib or pandas work, e.g.
``WeakKeyDictionary``'s ``remove``), the exception is printed as "Exception ignored in ..." and
dropped, and the command ran on to exit 0 with its file written. Here the interrupt is also kept
in a flag, that noise is silenced, and ``check_interrupt()`` re-raises it at the safe points:
before an atomic write's rename (``fileio``), when a stage starts, and when the command returns.

Example::

    with handling_interrupts():
        code = command(args)
        check_interrupt()  # KeyboardInterrupt if Ctrl-C came at any time, even swallowed
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_pending = threading.Event()


def interrupted() -> bool:
    """True once a Ctrl-C (SIGINT) arrived under ``handling_interrupts``."""
    return _pending.is_set()


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C arrived, even one raised where it was swallowed."""
    if _pending.is_set():
        raise KeyboardInterrupt


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _pending.set()
    raise KeyboardInterrupt


def _unraisable(hook: Any) -> Any:
    def quiet(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _pending.set()  # re-raised at the next safe point, without "Exception ignored"
            return
        hook(unraisable)

    return quiet


@contextmanager
def handling_interrupts(ignore_after: bool = False) -> Iterator[None]:
    """Install the recording SIGINT handler (main thread only) for the ``with`` block.

    ``ignore_after`` (a real process, not a test calling ``main``): once the block ends, a late
    Ctrl-C meets a finished command and is ignored, instead of raising in interpreter teardown.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending.clear()
    previous, hook = signal.signal(signal.SIGINT, _on_sigint), sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_after else previous)
        sys.unraisablehook = hook


def settle_interrupts() -> bool:
    """At the end of a command: whether a Ctrl-C came at any time, swallowed or not.

    ``signal.signal`` runs any handler still pending first, so a SIGINT that arrived a moment
    ago is raised here (and counted) rather than lost.
    """
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, _on_sigint)
        except KeyboardInterrupt:
            _pending.set()
    return _pending.is_set()
