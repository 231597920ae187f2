"""Without TensorRT every entry point says so, with the install hint (CLI exit 3), and the rest
of the workbench never imports TensorRT or Polygraphy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends.tensorrt.conftest import request_for
from workbench.backends.registry import Artifact, get_backend
from workbench.backends.tensorrt._trt import TRT_HINT, availability
from workbench.errors import BackendUnavailableError

ok, _ = availability()
needs_absent = pytest.mark.skipif(ok, reason="TensorRT is installed here")
HINT = "pip install tensorrt --extra-index-url https://pypi.nvidia.com"


def test_the_hint_says_where_tensorrt_comes_from() -> None:
    assert TRT_HINT.startswith("TensorRT is not installed: its libraries come only from NVIDIA")
    assert TRT_HINT.endswith(HINT)


@needs_absent
def test_registry_entry_points_raise_the_hint_before_any_work(tiny_onnx, tmp_path) -> None:
    backend = get_backend("tensorrt")
    assert HINT in (backend.unavailable_reason("cuda") or "")
    req = request_for(tiny_onnx, "fp16", tmp_path / "cache")
    with pytest.raises(BackendUnavailableError, match=r"pypi\.nvidia\.com"):
        backend.build(req, None)
    assert not (tmp_path / "cache").exists()  # nothing written
    art = Artifact(str(tmp_path / "engine.plan"), "0" * 64, "")
    with pytest.raises(BackendUnavailableError, match=r"pypi\.nvidia\.com"):
        backend.open_runner(req, art)
    assert BackendUnavailableError.exit_code == 3


@needs_absent
def test_run_with_a_tensorrt_build_exits_3_with_the_hint(tmp_path, capsys) -> None:
    pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
    import pandas as pd

    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.cli import main

    make_tiny_hf_classifier(tmp_path / "model", ["neg", "pos"], seed=0)
    texts = [f"review {i} says the film was {'good' if i % 2 else 'bad'}" for i in range(40)]
    labels = ["pos" if i % 2 else "neg" for i in range(40)]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "val.csv", index=False)
    exp = tmp_path / "e.toml"
    exp.write_text(
        '[model]\npath = "model"\n[data]\ntest = "val.csv"\n[gate]\nenabled = false\n'
        '[[build]]\nbackend = "tensorrt"\ndevice = "cuda"\nprecision = "int8-explicit"\n',
        encoding="utf-8",
    )
    reports = tmp_path / "r"
    code = main(["run", str(exp), "--reports", str(reports), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and HINT in err and "Traceback" not in err
    assert not reports.exists()


def test_importing_workbench_and_the_backend_imports_neither_library() -> None:
    code = (
        "import sys, workbench, workbench.cli, workbench.commands.doctor\n"
        "from workbench.backends.registry import get_backend\n"
        "get_backend('onnxruntime'); get_backend('tensorrt')\n"
        "import workbench.backends.tensorrt.build, workbench.backends.tensorrt.runner\n"
        "import workbench.backends.tensorrt.feeding, workbench.backends.tensorrt.audit\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'polygraphy')]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[3]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert res.returncode == 0, res.stderr
