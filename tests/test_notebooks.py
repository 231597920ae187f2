"""Notebooks run top to bottom (quick mode) and show the summary table and a chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
# A machine's absolute path (a checkout, a home, a temp folder) in a committed output.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp|Users|private|var/folders)/")


def _committed(name: str) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_executed_and_holds_no_machine_paths(name: str) -> None:
    cells = [c for c in _committed(name)["cells"] if c["cell_type"] == "code"]
    assert all(c.get("outputs") for c in cells), f"{name}: a code cell has no outputs"
    assert all(c.get("execution_count") for c in cells), f"{name}: not executed top to bottom"
    text = json.dumps([c["outputs"] for c in cells])
    found = MACHINE_PATH.findall(text)
    assert not found, f"{name}: absolute machine paths in outputs: {sorted(set(found))}"


def test_machine_path_pattern() -> None:
    assert MACHINE_PATH.search("report: /work/main/reports/r/report.html")
    assert MACHINE_PATH.search("'/tmp/pytest-of-root/x'") and MACHINE_PATH.search("/home/u/x")
    assert not MACHINE_PATH.search("report: reports/r/report.html")
    assert not MACHINE_PATH.search("tokens/tmp/ and a/work/b")


@pytest.mark.parametrize(
    ("name", "promise"),
    [
        ("01_quickstart.ipynb", "report: reports/"),
        ("02_your_model.ipynb", "INT8 verdict: "),
        ("03_make_int8_pass.ipynb", "on the gate half"),
        ("04_sweep.ipynb", "sweep report: sweep/sweep.html"),
    ],
)
def test_committed_notebook_ends_on_its_result(name: str, promise: str) -> None:
    last = [c for c in _committed(name)["cells"] if c["cell_type"] == "code"][-1]
    text = "".join("".join(o.get("text", "")) for o in last["outputs"])
    assert promise in text, text[-500:]


def _execute(name: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run a notebook top to bottom with its outputs under ``out``; return its outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
def test_quickstart_executes(tmp_path, monkeypatch):
    outputs = _execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "ort-int8-dynamic" in html and "<table" in html
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert list((tmp_path / "reports").glob("*/report.html"))


@pytest.mark.slow
def test_your_model_notebook_executes(tmp_path, monkeypatch):
    outputs = _execute("02_your_model.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "ort-int8-static" in html and "<table" in html
    assert re.search(r"INT8 verdict: (PASS|FAIL|INCONCLUSIVE) for ort-int8-static", text)
    assert "report: reports/" in text and "ONNX export matches PyTorch" in text
    assert list((tmp_path / "reports").glob("*/report.html"))


@pytest.mark.slow
def test_sweep_notebook_executes(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="sweeps run on Ray (extra: sweep)")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    outputs = _execute("04_sweep.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "ort-int8-static" in html and "<table" in html and "calibration.method" in html
    assert "4 cells, 0 failed" in text and "sweep.html" in text
    assert (tmp_path / "sweep" / "sweep.html").is_file()
    assert len(list((tmp_path / "sweep" / "cells").glob("*/run.json"))) == 4


@pytest.mark.slow
def test_make_int8_pass_notebook_executes(tmp_path, monkeypatch):
    outputs = _execute("03_make_int8_pass.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "<table" in html and "per-channel" in html
    assert "most harmful layers first" in text and "gate split" in text
    assert (tmp_path / "search" / "search.json").is_file()
    assert "the search's choice: " in text or "no build passes" in text
    assert "PASS on the gate half" in text or "what would help:" in text
