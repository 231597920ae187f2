"""Carry a file too big for one device transfer (the onnxruntime-gpu wheel) in parts.

``split`` cuts WHEEL into OUTDIR/p0..pN plus OUTDIR/manifest.json (size and sha256 of
every part and of the whole); ``join`` finds the parts by name in any of the given
folders, checks each one and the reassembled whole, and writes the file. Any missing
or corrupt part is a one-line message and exit status 2. Pure stdlib (Python >= 3.11).

    python benchmarks/ort_gpu_parts.py split WHEEL OUTDIR [--part-mb 55]
    python benchmarks/ort_gpu_parts.py join PARTDIR [PARTDIR ...] --out WHEEL_OR_DIR

See docs/ort-gpu.md for the device recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

MANIFEST = "manifest.json"
CHUNK = 1 << 20
SCHEMA = 1


class PartsError(Exception):
    """A missing, corrupt or mismatched part; the message is one line."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def split(wheel: Path, outdir: Path, part_mb: float = 55.0) -> dict:
    """Write ``outdir/p0..pN`` and ``outdir/manifest.json``; returns the manifest."""
    if not wheel.is_file():
        raise PartsError(f"{wheel} does not exist; give the path of the file to split")
    part_bytes = int(part_mb * (1 << 20))
    if part_bytes < 1:
        raise PartsError(f"--part-mb must be > 0, got {part_mb}")
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("p[0-9]*"):
        old.unlink()  # stale parts of an earlier split must not be joined
    parts: list[dict] = []
    whole = hashlib.sha256()
    with wheel.open("rb") as src:
        while True:
            name, h, size = f"p{len(parts)}", hashlib.sha256(), 0
            with (outdir / name).open("wb") as dst:
                while size < part_bytes and (block := src.read(min(CHUNK, part_bytes - size))):
                    dst.write(block)
                    h.update(block)
                    whole.update(block)
                    size += len(block)
            if size == 0:
                (outdir / name).unlink()
                break
            parts.append({"name": name, "size": size, "sha256": h.hexdigest()})
    manifest = {
        "schema": SCHEMA,
        "file": wheel.name,
        "size": wheel.stat().st_size,
        "sha256": whole.hexdigest(),
        "part_bytes": part_bytes,
        "parts": parts,
    }
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _find(name: str, dirs: list[Path]) -> Path | None:
    return next((d / name for d in dirs if (d / name).is_file()), None)


def _good_part(part: dict, dirs: list[Path]) -> Path:
    """The first copy of ``part`` in ``dirs`` whose size and sha256 match the manifest."""
    copies = [d / part["name"] for d in dirs if (d / part["name"]).is_file()]
    for path in copies:
        if path.stat().st_size == part["size"] and _sha256(path) == part["sha256"]:
            return path
    where = ", ".join(str(c) for c in copies)
    raise PartsError(
        f"part {part['name']} is corrupt ({where}: size/sha256 differ); carry it again"
    )


def join(dirs: list[Path], out: Path) -> dict:
    """Reassemble the parts found in ``dirs`` into ``out`` (a folder: the original file name
    inside it, which pip needs for a wheel), checking every sha256."""
    found = _find(MANIFEST, dirs)
    if found is None:
        raise PartsError(f"no {MANIFEST} in {[str(d) for d in dirs]}; carry it with p0")
    manifest = json.loads(found.read_text(encoding="utf-8"))
    parts = manifest["parts"]
    missing = [p["name"] for p in parts if _find(p["name"], dirs) is None]
    if missing:
        raise PartsError(
            f"missing part(s) {missing} of {len(parts)} in {[str(d) for d in dirs]}; "
            "carry them again (a machine given back loses earlier parts)"
        )
    paths = [_good_part(p, dirs) for p in parts]  # every part checked before writing
    if out.is_dir():
        out = out / manifest["file"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    whole = hashlib.sha256()
    with tmp.open("wb") as dst:
        for path in paths:
            with path.open("rb") as src:
                while block := src.read(CHUNK):
                    dst.write(block)
                    whole.update(block)
    if whole.hexdigest() != manifest["sha256"]:
        tmp.unlink()
        raise PartsError(f"joined file's sha256 differs from {found}; split it again")
    tmp.replace(out)
    return dict(manifest, out=str(out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("split", help="cut a file into parts + manifest.json")
    sp.add_argument("wheel", type=Path)
    sp.add_argument("outdir", type=Path)
    sp.add_argument("--part-mb", type=float, default=55.0, help="part size in MiB (default 55)")
    jp = sub.add_parser("join", help="reassemble and verify")
    jp.add_argument("dirs", type=Path, nargs="+", help="folders holding p0..pN (any mix)")
    jp.add_argument("--out", type=Path, required=True, help="file, or folder to write it into")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "split":
            m = split(args.wheel, args.outdir, args.part_mb)
            print(f"{m['file']}: {m['size']} bytes -> {len(m['parts'])} parts in {args.outdir}")
        else:
            m = join(args.dirs, args.out)
            print(f"{m['out']}: {m['size']} bytes from {len(m['parts'])} parts, sha256 ok")
    except (PartsError, OSError, ValueError, KeyError) as exc:
        print(f"ort_gpu_parts: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
