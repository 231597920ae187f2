"""Issue 22, observed: cache entry folders were mode 0700 (mkdtemp's) while their files were
0644. Folders now follow the umask as files do, so a shared cache is readable as a whole."""

from __future__ import annotations

import os

import pytest

from workbench.fileio import build_entry


@pytest.mark.parametrize(
    ("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_entry_folders_and_files_follow_the_same_umask(umask, folder, file, tmp_path):
    old = os.umask(umask)
    try:
        out = build_entry(tmp_path / "entry" / "model.onnx", lambda p: p.write_bytes(b"onnx"))
    finally:
        os.umask(old)
    assert out.parent.stat().st_mode & 0o777 == folder
    assert (out.parent / "manifest.json").stat().st_mode & 0o777 == file
