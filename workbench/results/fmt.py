"""Number formatting shared by the terminal, the gate's reasons and the report.

One rule everywhere: a value that rounds to zero prints as ``0.00``, never ``-0.00`` or
``+0.00``; differences carry a real minus sign (−); a missing value prints as ``—``.

Example::

    signed(-0.00004 * 100)  # '0.00'
    signed(-0.014 * 100)    # '−1.40'
    fixed(-0.0, 2)          # '0.00'
"""

from __future__ import annotations

import math

MISSING = "—"


def fixed(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; a value that rounds to zero has no sign."""
    if x is None or not math.isfinite(x):
        return MISSING
    text = f"{x:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def signed(x: float | None, digits: int = 2) -> str:
    """A difference with its sign (+1.40 / −1.40); one that rounds to zero is plain 0.00."""
    if x is None or not math.isfinite(x):
        return MISSING
    if float(f"{x:.{digits}f}") == 0:
        return f"{0:.{digits}f}"
    return f"{x:+.{digits}f}".replace("-", "−")


def ratio(x: float | None, digits: int = 2) -> str:
    """A speed-up such as 1.24; one that is positive but too small for ``digits`` decimals
    keeps two significant digits (0.0043, not 0.00)."""
    if x is None or not math.isfinite(x) or x <= 0:
        return MISSING
    return f"{x:.2g}" if x < 10 ** (-digits) else f"{x:.{digits}f}"
