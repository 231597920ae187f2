"""``workbench run`` with fused builds on a user's tiny BERT folder: the engine builds, scores,
times and audits them like any other build, and the run record says what ran."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore")

BUILDS = """
[[build]]
backend = "onnxruntime"

[[build]]
backend = "onnxruntime"
precision = "int8-static"
graph = "fused"

[[build]]
backend = "onnxruntime"
precision = "int8-dynamic"
graph = "fused"
"""


def test_run_with_fused_builds(user_experiment: Path, tmp_path: Path) -> None:
    from workbench.cli import main
    from workbench.results.records import load_run

    text = user_experiment.read_text(encoding="utf-8").replace("[gate]", BUILDS + "\n[gate]")
    text = text.replace('"ort-int8-static"', '"ort-int8-dynamic-fused"')  # the gated candidate
    exp = user_experiment.parent / "fused.toml"  # relative paths resolve next to it
    exp.write_text(text, encoding="utf-8")
    reports = tmp_path / "r"
    code = main(["run", str(exp), "--quick", "--reports", str(reports), "--run-id", "x",
                 "--calibration-sets", str(tmp_path / "sets"), "--no-progress"])  # fmt: skip
    assert code in (0, 1, 4)
    run = load_run(reports / "x")
    names = [b.name for b in run.builds]
    assert names == ["ort-fp32", "ort-int8-static-fused", "ort-int8-dynamic-fused"]
    assert [b.graph for b in run.experiment.builds] == ["plain", "fused", "fused"]
    for name in names[1:]:
        b = run.build(name)
        assert "fused graph" in b.notes[0]
        assert b.int8_coverage is not None and b.int8_coverage.quantized_matmul >= 12
        assert b.accuracy.agreement > 0.8 and b.latency
