"""Fault 2 (issue 22): a damaged model folder or .onnx file is exit 2 with one `error:` line from
the pre-flight checks of every command that opens the model — before any calibration set,
export or build is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.faults.conftest import cli, error_line, experiment_toml


def _truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _damaged(kind: str, model: Path) -> None:
    """Damage the HF folder ``model`` the way a failed copy or download would."""
    if kind == "truncated-weights":
        _truncate(model / "model.safetensors")
    elif kind == "weights-cut-in-header":
        _truncate(model / "model.safetensors", keep=0.0001)
    elif kind == "garbage-config":
        (model / "config.json").write_bytes(b"\x00\x89garbage{{")
    elif kind == "missing-tokenizer":
        (model / "tokenizer.json").unlink()
    elif kind == "truncated-tokenizer":
        _truncate(model / "tokenizer.json", keep=0.5)
    else:  # pragma: no cover
        raise AssertionError(kind)


def _user_copy(user_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "user"
    shutil.copytree(user_dir, root)
    (root / "exp.toml").write_text(experiment_toml(root / "model"))
    return root


def _written(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()]


DAMAGE = [
    "truncated-weights",
    "weights-cut-in-header",
    "garbage-config",
    "missing-tokenizer",
    "truncated-tokenizer",
]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", ["run", "search", "calibrate"])
def test_damaged_hf_folder_is_refused_before_any_stage(
    command, damage, user_dir, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    root = _user_copy(user_dir, tmp_path)
    _damaged(damage, root / "model")
    out, sets = tmp_path / "out", tmp_path / "sets"
    args = {
        "run": ["--reports", str(out), "--calibration-sets", str(sets), "--no-progress"],
        "search": ["--out", str(out), "--calibration-sets", str(sets), "--no-progress"],
        "calibrate": ["--reports", str(out), "--calibration-sets", str(sets), "--no-compare"],
    }[command]
    code, err = cli([command, str(root / "exp.toml"), *args], capsys)
    line = error_line(err)
    assert code == 2, err
    assert str(root / "model") in line  # names the damaged file or folder
    assert not _written(out, sets), "a file was written before the model was checked"
    assert not (cache / "exports").exists() and not (cache / "tables").exists()


@pytest.mark.parametrize("damage", ["truncated-weights", "garbage-config", "missing-tokenizer"])
def test_init_refuses_a_damaged_model_and_writes_nothing(damage, user_dir, tmp_path, capsys):
    root = _user_copy(user_dir, tmp_path)
    _damaged(damage, root / "model")
    target = tmp_path / "experiment.toml"
    args = ["init", "--model", str(root / "model"), "--data", str(root / "val.csv")]
    code, err = cli([*args, "--out", str(target)], capsys)
    assert code == 2 and str(root / "model") in error_line(err)
    assert not target.exists()


def test_intact_model_still_passes_the_weight_check(user_dir):
    from workbench.backends.model_files import check_model_files

    check_model_files("hf", user_dir / "model")  # no error: every tensor reads back


def test_truncated_pytorch_bin_is_a_model_error(user_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from workbench.backends.model_files import check_hf_weights
    from workbench.errors import ModelError

    folder = tmp_path / "bin-model"
    folder.mkdir()
    torch.save(
        load_file(str(user_dir / "model" / "model.safetensors")), folder / "pytorch_model.bin"
    )
    check_hf_weights(folder)  # intact: reads
    _truncate(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"pytorch_model\.bin is damaged or truncated"):
        check_hf_weights(folder)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_onnx_model_is_refused_by_run(keep, tiny_onnx, user_dir, tmp_path, capsys):
    """An .onnx cut anywhere (mid-tensor, near the end) is exit 2 naming the file."""
    model = tmp_path / "model.onnx"
    data = Path(tiny_onnx).read_bytes()
    model.write_bytes(data[: int(len(data) * keep)])
    root = _user_copy(user_dir, tmp_path)
    labels = json.dumps(["rotten", "fresh"])
    extra = f'path = "{model}"\ntokenizer = "{root / "model"}"\nlabels = {labels}'
    text = experiment_toml(model).replace(f'path = "{model}"', extra)
    (root / "exp.toml").write_text(text)
    out = tmp_path / "reports"
    args = ["run", str(root / "exp.toml"), "--reports", str(out), "--no-progress"]
    code, err = cli([*args, "--calibration-sets", str(tmp_path / "sets")], capsys)
    line = error_line(err)
    assert code == 2 and str(model) in line
    assert "damaged or truncated" in line or "not a readable ONNX model" in line
    assert not _written(out, tmp_path / "sets")


def test_onnx_with_a_dropped_initializer_is_refused(tiny_onnx, tmp_path):
    """Cut at a field boundary: the protobuf parses, but a node reads a tensor nobody defines."""
    import onnx

    from workbench.backends.model_files import check_onnx_file
    from workbench.errors import ModelError

    m = onnx.load(str(tiny_onnx))
    del m.graph.initializer[len(m.graph.initializer) // 2]
    bad = tmp_path / "cut.onnx"
    onnx.save(m, str(bad))
    check_onnx_file(tiny_onnx)  # the intact one passes
    with pytest.raises(ModelError, match="damaged or truncated"):
        check_onnx_file(bad)
