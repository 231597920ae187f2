"""``Closeable``: one ``with`` protocol for everything that owns a resource (sessions, buffers)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closeable:
    """Mixin: ``with obj:`` calls ``obj.close()`` on the way out, even on error."""

    def close(self) -> None:
        """Release what the object owns; subclasses override."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
