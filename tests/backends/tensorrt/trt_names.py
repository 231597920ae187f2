"""Static TensorRT API-name check, adapted from shared/trt-api/check_names.py (same rules).

``data/names-<version>.txt`` are the identifiers in the real TensorRT Python bindings
(tensorrt-cu12-bindings 10.16.1.11 and 11.4.0.106; see data/README-trt-api.md). A name is
present when a binding string equals it or ends with it (the linker merges literals such as
"INT8" into "UINT8"). This reads code and runs nothing: it cannot check signatures.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
TRT_ALIASES = {"trt", "tensorrt"}  # the workbench always names the module (or parameter) trt
_COMMON = set(dir(builtins)) | {
    a for t in (list, dict, str, bytes, set, tuple, int, float, memoryview, object) for a in dir(t)
}


def load_names() -> dict[str, set[str]]:
    """version -> identifiers in that version's bindings."""
    return {
        p.stem.removeprefix("names-"): set(p.read_text().split())
        for p in sorted(DATA.glob("names-*.txt"))
    }


def present(name: str, names: set[str]) -> bool:
    return name in names or any(s.endswith(name) for s in names)


def scan_source(source: str, filename: str = "<src>") -> tuple[set[str], set[str]]:
    """(names reached through ``trt.``, other attribute names) used by ``source``."""
    tree = ast.parse(source, filename)
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            defined.add(node.attr)
    trt_names: set[str] = set()
    other: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, cur = [node.attr], node.value
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and cur.id in TRT_ALIASES:
            trt_names.update(chain)
        elif node.attr not in defined | _COMMON and not node.attr.startswith("_"):
            other.add(node.attr)
    return trt_names, other


def scan_files(paths: list[Path]) -> tuple[set[str], set[str]]:
    trt_names: set[str] = set()
    other: set[str] = set()
    for p in paths:
        t, o = scan_source(p.read_text(), str(p))
        trt_names |= t
        other |= o
    return trt_names, other


def names_defined_in(package_dir: Path) -> set[str]:
    """Every function/class/field/attribute name the workbench itself defines."""
    out: set[str] = set()
    for p in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                out.add(node.name)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                out.add(node.target.id)  # dataclass fields
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                out.add(node.attr)
    return out
