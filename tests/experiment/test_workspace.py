"""Everything checkable is checked before any expensive stage: sizes, labels, truncation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.errors import BackendUnavailableError, ConfigError, DataError
from workbench.experiment.spec import load_experiment
from workbench.experiment.workspace import Workspace

pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_bert import make_tiny_hf_classifier

    root = tmp_path_factory.mktemp("ws")
    make_tiny_hf_classifier(root / "model", ["neg", "pos"], seed=0)
    texts = [f"review number {i} says the film was {'good' if i % 2 else 'bad'}" for i in range(60)]
    labels = ["pos" if i % 2 else "neg" for i in range(60)]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "val.csv", index=False)
    long = [" ".join(["word"] * 300) + f" {i}" for i in range(30)]
    pd.DataFrame({"text": long, "label": labels[:30]}).to_csv(root / "long.csv", index=False)
    other = ["yes" if i % 2 else "no" for i in range(60)]
    pd.DataFrame({"text": texts, "label": other}).to_csv(root / "other.csv", index=False)
    return root


def _exp(folder: Path, body: str) -> Path:
    p = folder / "e.toml"
    p.write_text('[model]\npath = "model"\n' + body, encoding="utf-8")
    return p


def test_labels_matched_by_name_and_small_pool_adapts(folder: Path) -> None:
    ws = Workspace.open(load_experiment(_exp(folder, '[data]\ntest = "val.csv"\n')))
    assert ws.model.labels == ["neg", "pos"] and ws.data_labels == ["neg", "pos"]
    assert ws.exp.calibration.n == len(ws.pool) == 15  # default 512 adapted, with a warning
    assert any("calibrating on all of them" in w for w in ws.warnings)
    assert len(ws.test) == 45


def test_from_experiment_applies_quick_as_asked(folder: Path) -> None:
    """The one setup entry: --quick's subsets when asked (or when the file says quick = true);
    ``quick=False`` opens the experiment as written, whatever the file says."""
    body = '[data]\ntest = "val.csv"\n[evaluate]\niterations = 40\n'
    quick = folder / "quick.toml"
    quick.write_text('quick = true\n[model]\npath = "model"\n' + body, encoding="utf-8")
    exp = load_experiment(quick)
    assert Workspace.from_experiment(exp).exp.evaluate.iterations == 10
    assert Workspace.from_experiment(exp, quick=False).exp.evaluate.iterations == 40
    plain = load_experiment(_exp(folder, body))
    assert Workspace.from_experiment(plain).exp.evaluate.iterations == 40
    assert Workspace.from_experiment(plain, quick=True).exp.evaluate.iterations == 10


def test_explicit_n_larger_than_pool_is_refused_before_training(folder: Path) -> None:
    exp = load_experiment(_exp(folder, '[data]\ntest = "val.csv"\n[calibration]\nn = 100\n'))
    with pytest.raises(ConfigError, match="n = 100 is larger than the calibration pool"):
        Workspace.open(exp)


def test_labels_that_do_not_match_the_model(folder: Path) -> None:
    exp = load_experiment(_exp(folder, '[data]\ntest = "other.csv"\n'))
    with pytest.raises(DataError, match="no"):
        Workspace.open(exp)


def test_truncation_is_warned(folder: Path) -> None:
    ws = Workspace.open(load_experiment(_exp(folder, '[data]\ntest = "long.csv"\n')))
    assert any("truncated" in w and "100%" in w for w in ws.warnings)


def test_missing_backend_exits_3_or_is_listed(folder: Path, tmp_path: Path, capsys) -> None:
    body = (
        '[data]\ntest = "val.csv"\n[calibration]\ncompare = []\n'
        "[evaluate]\niterations = 2\nshapes = [[1, 16]]\n[gate]\nenabled = false\n"
        '[[build]]\nbackend = "onnxruntime"\n'
        '[[build]]\nbackend = "tensorrt"\nprecision = "fp16"\n'
    )
    exp = _exp(folder, body)
    reports = tmp_path / "r"
    code = main(["run", str(exp), "--reports", str(reports), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "trt-fp16" in err and "TensorRT" in err and "--skip-unavailable" in err
    assert not reports.exists()  # refused before any work
    code = main(["run", str(exp), "--reports", str(reports), "--run-id", "x", "--skip-unavailable",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    from workbench.results.records import load_run

    run = load_run(reports / "x")
    assert [b.name for b in run.builds] == ["ort-fp32"]
    assert [s.name for s in run.skipped] == ["trt-fp16"] and "TensorRT" in run.skipped[0].reason
    assert "not run: trt-fp16" in capsys.readouterr().out
    assert "trt-fp16" in (reports / "x" / "report.html").read_text(encoding="utf-8")


def test_plan_refuses_an_unknown_combination(folder: Path) -> None:
    body = '[data]\ntest = "val.csv"\n[[build]]\nbackend = "pytorch"\nprecision = "int8-dynamic"\n'
    with pytest.raises(ConfigError, match="pytorch on cpu builds fp32"):
        from workbench.experiment.builds import plan_builds

        plan_builds(load_experiment(_exp(folder, body)), skip_unavailable=False)
    assert BackendUnavailableError.exit_code == 3
