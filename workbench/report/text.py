"""Small text formatters the report's template uses: numbers, code spans, model paths."""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path, PurePath
from typing import Any

_CODE = re.compile(r"`([^`\n]+)`")
PLAIN_BELOW = 1e15  # integral values below this print as integers, never in e-notation


def number(x: Any, spec: str = ".3f") -> str:
    """``x`` formatted with ``spec``; integers (and integral floats) as integers, and
    ``g`` formats never switch to e-notation for values of 1000 and more (2551, not 2.55e+03)."""
    if x is None or isinstance(x, bool) or not isinstance(x, numbers.Real):
        return "—" if x is None else str(x)
    if isinstance(x, numbers.Integral):
        return f"{int(x):d}"
    x = float(x)
    if not math.isfinite(x):
        return "—"
    if spec.endswith("g") and x.is_integer() and abs(x) < PLAIN_BELOW:
        return f"{int(x):d}"
    if spec.endswith("g") and 1000 <= abs(x) < PLAIN_BELOW:
        return f"{x:.0f}"
    out = f"{x:{spec}}"
    zero = not any(c in "123456789" for c in out)
    return out.lstrip("-") if zero else out  # -0.000 -> 0.000


def code_spans(text: str) -> Any:
    """Escaped ``text`` with Markdown-style `code` shown as ``<code>`` (Markup, safe to emit)."""
    from markupsafe import Markup, escape

    return Markup(_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))


def display_path(path: str, run_dir: Path) -> str:
    """A recorded model path shown absolute, like the others: a path inside the run directory
    that was recorded relative (to where the run started) is re-anchored on the run directory."""
    p = PurePath(path)
    if p.is_absolute() or not path:
        return path
    root = run_dir.resolve()
    if root.name in p.parts:
        tail = p.parts[p.parts.index(root.name) + 1 :]
        return str(root.joinpath(*tail))
    here = Path.cwd() / p
    return str(here) if here.exists() else f"{path} (relative to where the run started)"
