"""``calibset sweep`` is a sweep on the Ray engine: its grid, and its per-N summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.experiment.calibset_sweep import amax_spread, calibset_sweep_spec, summarize
from workbench.results.sweep import CellBuild, CellResult, SweepResult


def test_amax_spread_oracle():
    tables = [{"a": 1.0, "b": 2.0, "c": 5.0}, {"a": 3.0, "b": 2.0}]
    assert amax_spread(tables) == pytest.approx([1.0, 0.0])  # (3-1)/2 for a, 0 for b; c dropped
    assert amax_spread(tables[:1]).size == 0


def test_grid_is_an_ordinary_sweep_of_experiments():
    spec = calibset_sweep_spec([128, 32], [1, 0], calibration={"method": "max"}, n_test=200)
    assert len(spec.cells) == 4
    grid = {(c.experiment.calibration.n, c.experiment.calibration.seed) for c in spec.cells}
    assert grid == {(32, 0), (32, 1), (128, 0), (128, 1)}
    for c in spec.cells:
        exp = c.experiment
        assert exp.model.default and exp.seed == 0  # the same splits in every cell
        assert [b.name for b in exp.builds] == ["ort-fp32", "ort-int8-static"]
        assert exp.evaluate.n_test == 200 and not exp.gate.enabled
    assert len({c.key for c in spec.cells}) == 4  # each cell its own content hash


def _cell(key: str, n: str, seed: str, acc: float, out: Path, amax: float) -> CellResult:
    run_dir = out / "cells" / key
    run_dir.mkdir(parents=True)
    (run_dir / "calibration_table.json").write_text(json.dumps({"amax": {"t": amax, "u": 1.0}}))
    build = CellBuild("ort-int8-static", "onnxruntime", "int8-static", "cpu", acc, acc, acc,
                      0.0, 0.0, 0.0, 0.95, 0.9, 1.0, 1.0, "1x128")  # fmt: skip
    params = {"calibration.n": n, "calibration.seed": seed}
    return CellResult(2, key, key, params, "done", "", 1, 1.0, f"cells/{key}", "", "ort-fp32",
                      "ort-fp32", [build], None, None, "")  # fmt: skip


def test_summary_per_n_from_the_cells_records(tmp_path):
    cells = [
        _cell("a", "32", "0", 0.70, tmp_path, 2.0),
        _cell("b", "32", "1", 0.74, tmp_path, 4.0),
        _cell("c", "512", "0", 0.75, tmp_path, 3.0),
        _cell("d", "512", "1", 0.75, tmp_path, 3.0),
    ]
    from workbench.provenance import collect_provenance

    result = SweepResult(
        2, "calibset-sweep", "", {}, cells, [], "local", 2.0, 0.0, 1.0, collect_provenance()
    )
    lines = summarize(result, tmp_path).splitlines()
    assert lines[1].split()[:2] == ["32", "2"] and "0.7000/0.7200/0.7400" in lines[1]
    assert lines[1].split()[-1] == f"{float(np.median([2 / 3, 0.0])):.3f}"
    assert lines[2].split()[-1] == "0.000"


def test_own_onnx_is_pointed_to_workbench_sweep(tmp_path, capsys):
    assert main(["calibset", "sweep", "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "workbench sweep" in capsys.readouterr().err
