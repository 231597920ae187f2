"""Fault 3 and 11: every cache entry is verified on reuse and rebuilt (with a warning) when it does
not verify; temp files of killed writers are removed; results get the user's umask."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import cli, error_line
from workbench.errors import ConfigError, ModelError
from workbench.fileio import (
    MANIFEST_FILE,
    atomic_write_text,
    partial_dir,
    publish_entry,
    sha256_file,
    verify_entry,
)

pytest.importorskip("torch", reason="building cache entries needs torch (extra: torch)")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_bert import make_tiny_hf_encoder

    return make_tiny_hf_encoder(tmp_path_factory.mktemp("encoder") / "enc")


@pytest.fixture(scope="module")
def splits():
    from workbench.data.datasets import load_rotten_tomatoes, make_splits

    return make_splits(load_rotten_tomatoes(), seed=0)


def _prepare(splits, encoder: Path):
    from workbench.backends.pytorch.prepare import prepare_classifier

    return prepare_classifier(splits, encoder, finetune=False, max_train=120, max_length=32)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def _head(art) -> dict[str, np.ndarray]:
    with np.load(art.head_file, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_prepared_model_that_does_not_verify_is_rebuilt(splits, encoder, cache, caplog):
    art = _prepare(splits, encoder)
    head = _head(art)
    assert verify_entry(art.path) == ""
    weights = art.encoder_dir / "model.safetensors"
    for damage in ("garbage-head", "pickled-head", "truncated-weights", "no-manifest"):
        if damage == "garbage-head":
            art.head_file.write_bytes(b"not an npz")
        elif damage == "pickled-head":  # the case: object arrays need pickle to load
            np.savez(art.head_file, weight=np.array([object()], dtype=object), bias=np.zeros(2))
        elif damage == "truncated-weights":
            weights.write_bytes(weights.read_bytes()[:1000])
        else:
            (art.path / MANIFEST_FILE).unlink()  # from before manifests, or half-written
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="workbench"):
            again = _prepare(splits, encoder)
        assert "not intact" in caplog.text and "rebuilding" in caplog.text, damage
        assert again.path == art.path and verify_entry(again.path) == ""
        rebuilt = _head(again)
        assert all(np.array_equal(rebuilt[k], head[k]) for k in head)  # same seed, same head


def test_truncated_base_weights_are_a_model_error_before_training(splits, encoder, tmp_path, cache):
    import shutil

    bad = tmp_path / "bad-encoder"
    shutil.copytree(encoder, bad)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated"):
        _prepare(splits, bad)
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_prepare_cli_with_truncated_base_model(encoder, tmp_path, cache, capsys):
    import shutil

    bad = tmp_path / "bad-encoder"
    shutil.copytree(encoder, bad)
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    code, err = cli(["prepare", "--base-model", str(bad)], capsys)
    assert code == 2 and "not a readable safetensors file" in error_line(err)


def test_quantized_model_that_does_not_verify_is_rebuilt(tiny_onnx, cache, caplog):
    import onnx

    from workbench.backends.onnxruntime.build import quantize_dynamic_int8

    q = quantize_dynamic_int8(tiny_onnx)
    good = sha256_file(q.path)
    q.path.write_bytes(q.path.read_bytes()[:2048])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING, logger="workbench"):
        again = quantize_dynamic_int8(tiny_onnx)
    assert "not intact" in caplog.text and "does not match its sha256" in caplog.text
    assert again.path == q.path and verify_entry(q.path.parent) == ""
    onnx.checker.check_model(onnx.load(str(again.path)))
    assert sha256_file(again.path) == good  # quantization is deterministic


def test_export_that_does_not_verify_is_redone(tiny_model, cache, caplog):
    from workbench.backends.onnxruntime.export import export_onnx

    info = export_onnx(tiny_model)
    onnx_path, info_path = Path(info.onnx_path), Path(info.onnx_path).parent / "export.json"
    for damage in ("truncate-model", "garbage-info"):
        if damage == "truncate-model":
            onnx_path.write_bytes(onnx_path.read_bytes()[:4096])
        else:
            info_path.write_text("{not json")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="workbench"):
            again = export_onnx(tiny_model)
        assert "exporting again" in caplog.text
        assert again.onnx_path == info.onnx_path and sha256_file(onnx_path) == again.onnx_sha256


def test_temp_files_of_dead_writers_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    folder = tmp_path / "entry"
    folder.mkdir()
    stale = folder / f".model.onnx.{dead}.k2j3.tmp"
    live = folder / f".model.onnx.{alive}.x9y8.tmp"
    stale.write_bytes(b"\0" * 4096)  # the 90 MB export a kill -9 left behind, in small
    live.write_bytes(b"being written")
    atomic_write_text(folder / "model.onnx", "new")
    assert not stale.exists() and live.exists()
    assert (folder / "model.onnx").read_text() == "new"
    stale_dir = tmp_path / f".key.{dead}.abc.partial"
    stale_dir.mkdir()
    (stale_dir / "model.onnx").write_bytes(b"half")
    fresh = partial_dir(tmp_path / "key")
    assert not stale_dir.exists() and fresh.is_dir()


def test_publish_keeps_an_intact_entry_another_process_published(tmp_path):
    final = tmp_path / "entry"
    first, second = partial_dir(final), partial_dir(final)
    (first / "a.bin").write_bytes(b"first")
    (second / "a.bin").write_bytes(b"second")
    publish_entry(first, final)
    publish_entry(second, final)  # lost the race: theirs is intact, ours is dropped
    assert (final / "a.bin").read_bytes() == b"first" and verify_entry(final) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "report.html", "<html>")
        assert p.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        q = atomic_write_text(tmp_path / "private.json", "{}")
        assert q.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_finished_run_files_are_readable_by_others(done_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("report.html", "run.json", "gate.json"):
        assert (done_run / name).stat().st_mode & 0o666 == 0o666 & ~umask


def test_a_directory_where_a_file_goes_is_a_config_error(tmp_path):
    (tmp_path / "report.html").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        atomic_write_text(tmp_path / "report.html", "x")
