"""Notebooks run top to bottom (quick mode) and show the summary table and a chart."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run a notebook top to bottom with its outputs under ``out``; return its outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_quickstart_executes(tmp_path, monkeypatch):
    outputs = _execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "ort-int8-dynamic" in html and "<table" in html
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert list((tmp_path / "reports").glob("*/report.html"))


def test_your_model_notebook_executes(tmp_path, monkeypatch):
    outputs = _execute("02_your_model.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "ort-int8-static" in html and "<table" in html
    assert ("PASS" in text or "FAIL" in text) and "report.html" in text
    assert list((tmp_path / "reports").glob("*/report.html"))


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


def test_make_int8_pass_notebook_executes(tmp_path, monkeypatch):
    outputs = _execute("03_make_int8_pass.ipynb", tmp_path, monkeypatch)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "<table" in html and "per-channel" in html
    assert "most harmful layers first" in text and "gate split" in text
    assert (tmp_path / "search" / "search.json").is_file()
