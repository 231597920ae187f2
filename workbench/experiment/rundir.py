"""A run's directory: a safe name under its root, checked before any expensive stage,
locked while a run owns it, and emptied of an earlier run's files when a run starts.

Example::

    preflight(exp, "reports", "calibration_sets", "nightly")
    with claim_run_dir("reports", "nightly") as claim:
        ...  # write into claim.path; a second run on "nightly" gets a ConfigError
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

from workbench.errors import ConfigError, note_output_dir
from workbench.fileio import cache_root, check_name, check_path_arg, check_writable_dir
from workbench.results.spec import Experiment

log = logging.getLogger(__name__)

LOCK_FILE = ".workbench.lock"  # also marks the folder as a workbench run directory
RUN_RECORD = "run.json"


def safe_name(text: str) -> str:
    """``text`` made a safe path component: other characters become ``-`` (for default ids)."""
    name = re.sub(r"[^A-Za-z0-9._+=-]+", "-", text).strip(".-")[:128].rstrip(".-")
    return name or "run"


def default_run_id(exp: Experiment, now: datetime | None = None) -> str:
    """``20260105-093000-<experiment name>[-quick]``: named after the experiment, not its files.

    The name is made a safe path component, then checked like a ``--run-id``.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    name = safe_name(exp.name)[:96]  # "../x" -> "x": no dot runs left from a path
    return check_run_id(f"{stamp}-{name}{'-quick' if exp.quick else ''}")


def calibration_set_name(exp: Experiment, n: int, strategy: str, seed: int) -> str:
    """A run's calibration-set folder, e.g. ``demo-stratified-n512-s0`` (experiment's name)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", safe_name(exp.name)).strip(".-") or "experiment"
    return check_name(f"{base[:96]}-{strategy}-n{n}-s{seed}", "calibration set name")


def check_run_id(run_id: str) -> str:
    """A run id is one path component, so its directory stays inside the reports folder."""
    return check_name(run_id, "--run-id")


def inside(root: str | Path, path: str | Path, what: str) -> Path:
    """``path`` resolved, after checking it lies under ``root`` (symlinks followed)."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and not target.is_relative_to(base):
        raise ConfigError(f"{what} {path} resolves to {target}, outside {base}; refusing to write")
    return target


def preflight(exp: Experiment, reports_root: str, calibration_root: str, run_id: str) -> None:
    """Every check that needs no data or model, done before the first expensive stage.

    Names that become paths (run id, build names), the reports and calibration folders and
    the cache folder must be usable, and the gate must not compare a build with itself;
    otherwise a one-line ConfigError (exit 2).
    """
    check_path_arg(reports_root, "--reports")
    check_path_arg(calibration_root, "--calibration-sets")
    if run_id:
        check_run_id(run_id)
        inside(reports_root, Path(reports_root) / run_id, "run directory")
        _check_claimable(Path(reports_root) / run_id)
    for b in exp.builds:
        check_name(b.name, "build name")
    if exp.gate.enabled and exp.gate.baseline in exp.gate.candidates:
        raise ConfigError(
            f"[gate] candidates include the baseline {exp.gate.baseline!r}: a build gated "
            "against itself always passes; list other builds as candidates"
        )
    fix = "pass --reports a writable folder"
    check_writable_dir(reports_root, "reports folder", fix, create=False)
    fix = "pass --calibration-sets a writable folder"
    check_writable_dir(calibration_root, "calibration-sets folder", fix, create=False)
    fix = "point WORKBENCH_CACHE at a writable folder"
    check_writable_dir(cache_root(), "cache folder", fix)


class RunDirClaim:
    """An exclusive lock on a run directory (``fcntl.flock``: the OS drops it if we die)."""

    def __init__(self, path: Path, handle: IO[str] | None) -> None:
        self.path = path
        self._handle = handle

    def release(self) -> None:
        """Let other runs use the directory again (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunDirClaim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def claim_run_dir(reports_root: str | Path, run_id: str) -> RunDirClaim:
    """Create/lock ``reports_root/run_id`` and remove an earlier run's files from it.

    A directory another run holds raises ConfigError; so does one with files the workbench
    did not write (no lock file, no run.json), which is never emptied.
    """
    check_run_id(run_id)
    root = check_writable_dir(reports_root, "reports folder", "pass --reports a writable folder")
    inside(root, root / run_id, "run directory")
    path = root / run_id
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {path} ({exc.strerror})") from exc
    if not path.is_dir():
        raise ConfigError(f"run directory {path} is a file; choose another --run-id")
    note_output_dir(path)  # an internal error's traceback goes here
    owned = any((path / name).exists() for name in (LOCK_FILE, RUN_RECORD, SWEEP_CELL_FILE))
    handle = _lock(path, run_id)
    others = [p for p in path.iterdir() if p.name != LOCK_FILE]
    if others and not owned:
        if handle is not None:
            handle.close()
        raise _foreign(path, others)
    if others:
        log.info("run directory %s held an earlier run; starting it afresh", path)
    for p in others:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return RunDirClaim(path, handle)


SWEEP_CELL_FILE = "cell.json"  # a sweep cell's own record: the sweep rewrites it after the run


def _foreign(path: Path, others: list[Path]) -> ConfigError:
    names = ", ".join(sorted(p.name for p in others)[:3])
    return ConfigError(
        f"{path} already holds files the workbench did not write ({names}); "
        "choose another --run-id or empty that folder"
    )


def check_not_busy(path: str | Path) -> None:
    """ConfigError if a run is still writing ``path`` (its lock is held): its records are not
    final yet, so gating or reporting them now would read a half-made run."""
    p = Path(path)
    if p.is_dir() and (p / LOCK_FILE).exists():
        handle = _lock(p, "", record=False)
        if handle is not None:
            handle.close()


def lock_dir(path: str | Path, flag: str, owner: str) -> RunDirClaim:
    """Create ``path`` (the folder given by ``flag``) and hold the run folders' lock on it,
    recording ``owner``, without emptying it.

    For output folders that are not run directories (``search --out``): a second workbench
    process writing into the same folder gets a ConfigError (exit 2) instead of mixing files.
    """
    p = check_writable_dir(path, f"{flag} folder", f"pass {flag} a writable folder")
    note_output_dir(p)  # an internal error's traceback goes here
    return RunDirClaim(p, _lock(p, owner))


def _check_claimable(path: Path) -> None:
    """Fail fast (creating nothing) if ``claim_run_dir`` would refuse ``path`` now."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"run directory {path} is a file; choose another --run-id")
    note_output_dir(path)  # an internal error's traceback goes here
    owned = any((path / name).exists() for name in (LOCK_FILE, RUN_RECORD, SWEEP_CELL_FILE))
    others = [p for p in path.iterdir() if p.name != LOCK_FILE]
    if others and not owned:
        raise _foreign(path, others)
    check_not_busy(path)


def _lock(path: Path, run_id: str, record: bool = True) -> IO[str] | None:
    """Take the run directory's lock without waiting; ConfigError naming the holder if taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, as before
        return None
    lock = path / LOCK_FILE
    handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115 (held for the run's lifetime)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"run directory {path} is in use by another workbench run ({holder}); "
            "wait for it to finish, or use another --run-id / run directory"
        ) from exc
    if not record:
        return handle
    handle.seek(0)
    handle.truncate()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    handle.write(json.dumps({"pid": os.getpid(), "run_id": run_id, "started_utc": stamp}))
    handle.flush()
    return handle
