"""``--keep-models``: copy a run's models out of the cache into its folder.

By default a run folder holds records and the report (well under 10 MB) and refers to the
models it measured by absolute path and sha256 in the content-addressed cache. With
``keep_models`` every build's model and every compared method's Q/DQ model is copied into
the run (``models/``, ``calibration/``) and the records point at the copies, so the folder
stands alone (to archive, or after ``workbench cache --clear``).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from workbench.fileio import cache_root
from workbench.results.calibration import COMPARISON_FILE, CalibrationComparison
from workbench.results.records import RunResult, load_record, save_record

MODELS_DIR = "models"


def _copy(src: Path, dst: Path) -> None:
    """``src`` (a file, with any external-data files beside it, or a folder) to ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    shutil.copy2(src, dst)
    for extra in src.parent.glob(f"{src.name}.data"):  # ONNX external data, if any
        shutil.copy2(extra, dst.with_name(dst.name + ".data"))


def _cached(path: str) -> Path | None:
    """The artefact at ``path`` when it lives in the cache (else it is the user's own)."""
    if not path:
        return None
    p = Path(path)
    try:
        p.resolve().relative_to(cache_root().resolve())
    except ValueError:
        return None
    return p if p.exists() else None


def keep_models(run: RunResult, run_dir: Path) -> RunResult:
    """Copy the run's cached models into ``run_dir`` and return the record pointing at them."""
    builds = []
    for b in run.builds:
        src = _cached(b.model_path)
        if src is not None:
            dst = run_dir / MODELS_DIR / (b.name + ("" if src.is_dir() else src.suffix))
            _copy(src, dst)
            b = dataclasses.replace(b, model_path=str(dst.resolve()))
        builds.append(b)
    _keep_compared(run_dir)
    return dataclasses.replace(run, builds=builds)


def _keep_compared(run_dir: Path) -> None:
    """Each compared method's Q/DQ model beside its table, the comparison record pointing at it
    (relative to the run folder)."""
    path = run_dir / COMPARISON_FILE
    if not path.is_file():
        return
    rec = load_record(CalibrationComparison, path)
    methods = []
    for m in rec.methods:
        src = _cached(m.qdq_model_file)
        if src is not None:
            rel = str(Path(m.table_file).with_suffix(".qdq.onnx"))
            _copy(src, run_dir / rel)
            m = dataclasses.replace(m, qdq_model_file=rel)
        methods.append(m)
    save_record(dataclasses.replace(rec, methods=methods), path)
