"""Peak resident memory of this process (what a CPU build costs to host)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak RSS of this process's address space so far, in MiB.

    Reads VmHWM from /proc on Linux: unlike ``ru_maxrss`` it starts afresh at
    ``exec``, so a child process reports its own peak, not its parent's.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
