"""The calibration-size sweep on the tiny model: real calibration, real Q/DQ models, real ORT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.data.tokenize import TextTokenizer
from workbench.errors import DataError
from workbench.experiment.calibset_sweep import (
    PLOT_FILE,
    SWEEP_FILE,
    SweepResult,
    amax_spread,
    run_sweep,
)
from workbench.results.records import load_record


def test_amax_spread_oracle():
    tables = [{"a": 1.0, "b": 2.0, "c": 5.0}, {"a": 3.0, "b": 2.0}]
    assert amax_spread(tables).tolist() == [1.0, 0.0]  # (3-1)/2, (2-2)/2; "c" not common
    assert amax_spread(tables[:1]).size == 0


def test_sweep_on_tiny_model(tiny_model, tiny_onnx, tmp_path):
    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, max_length=tiny_model.max_length)
    result = run_sweep(
        [8, 32, 10**6],
        [0, 1],
        out_dir=tmp_path / "sweep",
        onnx_path=tiny_onnx,
        tokenizer=tok,
        n_test=60,
        calibration_root=tmp_path / "sets",
    )
    assert [s.n for s in result.by_n] == [8, 32] and len(result.points) == 4
    assert result.skipped and "N=1000000" in result.skipped[0]
    for p in result.points:
        assert 0.0 <= p.accuracy <= 1.0 and 0.0 <= p.agreement_with_fp32 <= 1.0
        assert (tmp_path / "sweep" / p.table_file).is_file()
    for s in result.by_n:
        assert s.tensors > 0 and s.amax_spread_median >= 0 and s.seeds == 2
    # no leftover Q/DQ models; JSON and plot written
    assert not list((tmp_path / "sweep" / "models").glob("*.onnx"))
    assert (tmp_path / "sweep" / PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    back = load_record(SweepResult, tmp_path / "sweep" / SWEEP_FILE)
    assert back.by_n == result.by_n
    data = json.loads((tmp_path / "sweep" / SWEEP_FILE).read_text())
    assert data["n_test"] == 60 and np.isfinite(data["fp32_accuracy"])
    assert "N" in result.summary() and "plot:" in result.summary()


def test_sweep_needs_a_tokenizer_with_onnx(tiny_onnx, tmp_path):
    with pytest.raises(DataError, match="tokenizer"):
        run_sweep([8], [0], out_dir=tmp_path, onnx_path=tiny_onnx)
