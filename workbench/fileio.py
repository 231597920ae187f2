"""Small file helpers: atomic writes (temp file + rename), content hashes, cache manifests.

A cache entry is a folder sealed by ``manifest.json`` (the sha256 of each of its files),
written last; ``verify_entry`` re-hashes it on reuse, so a truncated or replaced file is
rebuilt instead of trusted. Temp files carry their writer's pid, so ones left by a killed
process are recognised and removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.interrupts import check_interrupt

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
STALE_TEMP_SECONDS = 24 * 3600  # a temp file this old is stale whoever wrote it
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")


def check_name(value: str, what: str) -> str:
    """``value`` as one safe path component, or ConfigError (exit 2) naming ``what``.

    The one validator for every name that becomes a folder or file name (run ids, build
    names, sweep names, calibration-set names): letters, digits and ``._+=-``, no leading dot,
    no trailing dot, at most 128 characters — so no ``..``, ``/``, ``\\``, absolute path, NUL
    or control character can lead a write outside the folder the user named.
    """
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or value.endswith("."):
        raise ConfigError(
            f"{what} {value!r} is not a plain folder/file name; use letters, digits and . _ + = - "
            "(no slashes, no leading dot, at most 128 characters)"
        )
    return value


def check_path_arg(value: str | os.PathLike[str], what: str) -> Path:
    """A folder/file path the user typed: refused (ConfigError) when empty or holding a NUL or
    another control character, which no file system name should carry."""
    text = os.fspath(value)
    if not text.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ConfigError(
            f"{what} {text!r} is empty or holds a control character (NUL, newline...); "
            "give a plain path"
        )
    return Path(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so a reader never sees a half-written file."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as pretty JSON atomically (NaN refused: JSON has none)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False))


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[str], object]) -> Path:
    """Let ``writer`` fill a temp file next to ``path``, then rename it into place.

    The file gets the user's umask (not mkstemp's 0600); temp files of ``path`` left by a
    killed writer are removed first. A directory at ``path`` is refused (ConfigError).
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file path to write to")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        writer(tmp)
        check_interrupt()  # a Ctrl-C swallowed during the work: the file is not published
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _umask() -> int:
    """The process umask, read without changing it where Linux says it (threads stay safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it: set and restore
    os.umask(mask)
    return mask


def clean_stale_temps(folder: str | os.PathLike[str], name: str = "") -> list[Path]:
    """Remove ``.<name>.<pid>.*.tmp`` files and ``.partial`` folders whose writer is dead.

    Anything older than a day counts as stale too (pids get reused).
    """
    import shutil

    removed: list[Path] = []
    try:
        entries = [*Path(folder).glob(f".{name}*.tmp"), *Path(folder).glob(f".{name}*.partial")]
    except OSError:
        return removed
    for p in entries:
        if not _temp_is_stale(p, name):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
        log.info("removed what an interrupted write left behind: %s", p)
    return removed


def _temp_is_stale(p: Path, name: str) -> bool:
    try:
        age = time.time() - p.stat().st_mtime
    except OSError:
        return False
    if age > STALE_TEMP_SECONDS:
        return True
    if not name:
        return False  # the pid cannot be told apart from the name: age alone decides
    pid = p.name[len(name) + 2 :].split(".", 1)[0]
    return pid.isdigit() and not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of an object's canonical JSON (sorted keys): a content key."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_strings(items: Iterable[str]) -> str:
    """Hex sha256 of a sequence of strings (order matters)."""
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def cache_root() -> Path:
    """Root of workbench's content-addressed cache (``$WORKBENCH_CACHE`` or ~/.cache/workbench)."""
    env = os.environ.get("WORKBENCH_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "workbench"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise ConfigError(
            f"cache folder {root} is a file, not a directory; point WORKBENCH_CACHE at a folder"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot create the cache folder {root} ({exc.strerror}); "
            "point WORKBENCH_CACHE at a writable folder"
        ) from exc
    return root


def check_writable_dir(
    path: str | os.PathLike[str], what: str, fix: str, create: bool = True
) -> Path:
    """Prove a file can be written in folder ``path``; ConfigError naming ``what`` and ``fix``.

    ``create=False`` leaves a missing folder uncreated and probes its nearest existing parent.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p} is a file, not a directory; {fix}")
    probe_dir = p
    if not create:
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise ConfigError(f"{what} {p} lies under {probe_dir}, which is a file; {fix}")
    try:
        if create:
            p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{what} {p} is not writable ({reason}); {fix}") from exc
    return p


def check_writable_file(path: str | os.PathLike[str], what: str, fix: str) -> Path:
    """``path`` can be (re)written as a file: not a directory, its folder writable."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {p} is a directory, not a file; {fix}")
    check_writable_dir(p.parent if str(p.parent) else Path("."), f"the folder of {what}", fix)
    return p


def seal_entry(folder: str | os.PathLike[str]) -> Path:
    """Write ``folder``'s manifest: the sha256 of every file in it (written last, atomically)."""
    root = Path(folder)
    files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE and not p.name.endswith(".tmp")
    }
    return atomic_write_json(root / MANIFEST_FILE, {"v": 1, "files": files})


def verify_entry(folder: str | os.PathLike[str]) -> str:
    """Why the cache entry ``folder`` cannot be trusted ("" when every file verifies)."""
    root = Path(folder)
    try:
        data = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict) or not files:
            return "its manifest lists no files"
    except FileNotFoundError:
        return "it has no manifest (an interrupted or older build)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its manifest is unreadable ({type(exc).__name__})"
    for rel, digest in files.items():
        p = root / rel
        if not p.is_file():
            return f"{rel} is missing"
        if sha256_file(p) != digest:
            return f"{rel} does not match its sha256 (truncated or replaced)"
    return ""


def partial_dir(final: str | os.PathLike[str]) -> Path:
    """A fresh private folder next to ``final`` to build a cache entry in (see publish_entry)."""
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)
    folder = tempfile.mkdtemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent
    )
    os.chmod(folder, 0o777 & ~_umask())  # mkdtemp's 0700 would outlive the rename: umask, as files
    return Path(folder)


def publish_entry(partial: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Seal ``partial`` and rename it to ``final``; if another process got there first with an
    intact entry, keep theirs. Readers never see a half-built entry."""
    import shutil

    src, dst = Path(partial), Path(final)
    seal_entry(src)
    for _ in range(3):
        try:
            os.rename(src, dst)
            return dst
        except OSError:  # dst exists (and is not empty)
            if not verify_entry(dst):
                shutil.rmtree(src, ignore_errors=True)
                return dst
            shutil.rmtree(dst, ignore_errors=True)
    raise OSError(f"could not publish cache entry {dst}")


def build_entry(out: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Make the one-file cache entry ``out`` (``<entry folder>/<file>``): ``write(path)`` fills a
    private folder, which is then sealed and published. Example::

        if not reuse_entry(out.parent, "Q/DQ model"):
            build_entry(out, lambda tmp: write_qdq_model(fp32, table, tmp))
    """
    import shutil

    target = Path(out)
    tmp = partial_dir(target.parent)
    try:
        write(tmp / target.name)
        publish_entry(tmp, target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def reuse_entry(folder: str | os.PathLike[str], what: str) -> bool:
    """True when ``folder`` is a sealed, intact cache entry; a broken one is logged and removed."""
    import shutil

    root = Path(folder)
    if not root.exists():
        return False
    problem = verify_entry(root)
    if not problem:
        return True
    log.warning("cached %s at %s is not intact (%s); rebuilding it", what, root, problem)
    shutil.rmtree(root, ignore_errors=True)
    return False
