"""Progress per stage: tqdm bars on a terminal, silent when progress is off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Progress = Callable[[int, int], None]


@dataclass
class Stages:
    """One bar per stage; a stage's callback sets its total and position."""

    enabled: bool

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Any]:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{name:<28}", disable=not self.enabled, leave=True)
        try:
            yield bar
        finally:
            if total is None and bar.total is None:
                bar.update(1)
            bar.close()

    def callback(self, bar: Any) -> Progress:
        """A ``(done, total)`` callback that drives ``bar``."""

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        return update
