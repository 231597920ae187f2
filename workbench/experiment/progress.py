"""Progress per stage: tqdm bars on a terminal, one plain line per stage elsewhere.

In a CI log or ``make demo > log`` a bar would write carriage-return noise; there each
stage prints a line when it starts, one every ``heartbeat_s`` while it runs (a classifier
prepared from scratch takes minutes) and one when it ends (with its time), on stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

Progress = Callable[[int, int], None]


class _Count:
    """What a stage's callback updates when no bar is drawn."""

    def __init__(self) -> None:
        self.n = 0
        self.total: int | None = None

    def refresh(self) -> None:
        pass


@dataclass
class Stages:
    """One bar (terminal) or one line (otherwise) per stage; silent when not enabled."""

    enabled: bool
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    heartbeat_s: float = 60.0  # off a terminal: a "still running" line this often

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Any]:
        if not self.enabled or not self.interactive:
            yield from self._plain(name)
            return
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        bar = tqdm(total=total, desc=f"{name:<28}", leave=True, file=self.stream)
        try:
            # log lines print above the bar instead of being glued onto it
            with logging_redirect_tqdm(loggers=[logging.getLogger("workbench")]):
                yield bar
        finally:
            if bar.total is None:
                bar.total = 1
                bar.n = 1
            bar.refresh()
            bar.close()

    def _plain(self, name: str) -> Iterator[_Count]:
        count = _Count()
        t0 = time.perf_counter()
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(name, t0, stop), daemon=True)
        if self.enabled:
            self._line(f"{name} ...")
            beat.start()
        try:
            yield count
        finally:
            stop.set()
            if beat.is_alive():
                beat.join()  # its last line comes before the "done" line
        if self.enabled:
            done = f" ({count.n}/{count.total})" if count.total else ""
            self._line(f"{name}{done} done in {time.perf_counter() - t0:.1f} s")

    def _line(self, text: str) -> None:
        print(text, file=self.stream)
        self.stream.flush()

    def _beat(self, name: str, t0: float, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            self._line(f"{name}: still running, {time.perf_counter() - t0:.0f} s")

    def callback(self, bar: Any) -> Progress:
        """A ``(done, total)`` callback that drives ``bar``."""

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = min(done, total)
            bar.refresh()

        return update
