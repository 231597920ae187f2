"""Number formatting, code spans and model-path display used by the report's template."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from workbench.report.text import code_spans, display_path, number


def test_integers_stay_integers():
    assert number(2551.0, ".3g") == "2551"  # was 2.55e+03
    assert number(2551, ".3g") == "2551"
    assert number(np.int64(12), ".1f") == "12"
    assert number(2551.37, ".3g") == "2551"
    assert number(123456789.5, ".4g") == "123456790"
    assert number(0.000123456, ".3g") == "0.000123"
    assert number(1.23456, ".3g") == "1.23"
    assert number(0.78123, ".3f") == "0.781"
    assert number(math.nan) == number(None) == number(math.inf) == "—"
    assert number(True) == "True"


def test_code_spans_become_code_and_text_stays_escaped():
    out = str(code_spans("use `--per-tensor` for <b>speed</b> & `a<b`"))
    assert out == (
        "use <code>--per-tensor</code> for &lt;b&gt;speed&lt;/b&gt; &amp; <code>a&lt;b</code>"
    )
    assert "`" not in out
    assert str(code_spans("an odd ` backtick")) == "an odd ` backtick"


def test_model_paths_are_shown_absolute(tmp_path, monkeypatch):
    run = tmp_path / "reports" / "20250101-rt"
    run.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    rel = "reports/20250101-rt/models/int8-static-qdq.onnx"
    assert display_path(rel, Path("reports/20250101-rt")) == str(
        run.resolve() / "models" / "int8-static-qdq.onnx"
    )
    assert display_path("/cache/m.onnx", run) == "/cache/m.onnx"
    (tmp_path / "models").mkdir()
    assert display_path("models", run) == str(tmp_path / "models")
    assert display_path("gone/m.onnx", run) == "gone/m.onnx (relative to where the run started)"
