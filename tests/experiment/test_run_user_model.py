"""A user's own model end to end: `workbench init` then `workbench run` on CPU.

Tiny random HF classifiers made in the test, real Rotten Tomatoes texts in CSV files;
the FP32 predictions are checked against a direct ``transformers`` evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.tiny_bert import make_tiny_hf_classifier
from workbench.cli import main

pytest.importorskip("torch", reason="the user-model path needs torch (extra: torch)")
pytestmark = pytest.mark.filterwarnings("ignore")
NAMES = ["rotten", "fresh"]
CPU_BUILDS = {"torch-fp32", "ort-fp32", "ort-int8-static", "ort-int8-dynamic"}


def _frames(pairs: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    from workbench.data.datasets import load_rotten_tomatoes

    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(260))
    df = pd.DataFrame({"sentence": ds["text"], "y": [NAMES[i] for i in ds["label"]]})
    if pairs:
        df["second"] = [t.split(" ")[0] + " and more" for t in df["sentence"]]
    return df.iloc[:120].reset_index(drop=True), df.iloc[120:].reset_index(drop=True)


def _transformers_preds(model_dir: Path, df: pd.DataFrame, pair: str | None) -> list[str]:
    """Independent oracle: transformers' own tokenizer and model on the same rows."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    second = list(df[pair]) if pair else None
    enc = tok(list(df["sentence"]), second, truncation=True, max_length=128, padding=True,
              return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        logits = model(**enc).logits.numpy()
    return [model.config.id2label[int(i)] for i in logits.argmax(axis=1)]


def _run(tmp_path: Path, init_args: list[str]) -> Path:
    exp = tmp_path / "experiment.toml"
    assert main(["init", *init_args, "--out", str(exp)]) == 0
    reports = tmp_path / "reports"
    code = main(
        ["run", str(exp), "--quick", "--reports", str(reports), "--run-id", "r", "--no-progress"]
    )
    assert code in (0, 1, 4)  # 1 failed, 4 inconclusive: valid outcomes for a random model
    return reports / "r"


def _check_run(run_dir: Path, builds: set[str], expected: list[str], test: pd.DataFrame) -> None:
    from workbench.results.records import load_run

    run = load_run(run_dir)
    assert {b.name for b in run.builds} == builds
    assert run.labels == ["fresh", "rotten"]  # the model's own output order
    for b in run.builds:
        assert b.accuracy is not None and b.accuracy.n == len(test)
        assert b.latency and all(lat.p50_ms > 0 for lat in b.latency)
        assert (run_dir / b.accuracy.predictions_file).is_file()
    ref = run.build(run.reference_build)
    preds = pd.read_parquet(run_dir / ref.accuracy.predictions_file)
    ours = [run.labels[i] for i in preds["pred"]]
    assert ours == expected  # per sample, same as transformers
    truth = list(test["y"])
    assert ref.accuracy.accuracy == pytest.approx(np.mean(np.array(expected) == np.array(truth)))
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "ort-int8-static" in html and "<html" in html
    gate = json.loads((run_dir / "gate.json").read_text())
    assert gate["candidate"].endswith("ort-int8-static")
    paired = [(s.baseline, s.candidate, s.batch, s.seq) for s in run.speedups]
    assert paired == [("ort-fp32", "ort-int8-static", 8, 128)]  # the speed rule's pair and shape
    speed = next(c for c in gate["checks"] if c["name"] == "speedup")
    assert speed["details"]["paired"] and speed["status"] in ("pass", "fail", "inconclusive")
    assert (run_dir / "gate.md").is_file() and (run_dir / "gate-junit.xml").is_file()


@pytest.mark.slow
def test_hf_folder_with_separate_files(tmp_path: Path) -> None:
    model = make_tiny_hf_classifier(tmp_path / "model", ["fresh", "rotten"], seed=1)
    test, calib = _frames()
    test.to_csv(tmp_path / "val.csv", index=False)
    calib.to_csv(tmp_path / "calib.csv", index=False)
    run_dir = _run(
        tmp_path,
        ["--model", str(model), "--test", str(tmp_path / "val.csv"), "--calibration",
         str(tmp_path / "calib.csv"), "--text-column", "sentence", "--label-column", "y"],
    )  # fmt: skip
    _check_run(run_dir, CPU_BUILDS, _transformers_preds(model, test, None), test)


@pytest.mark.slow
def test_sentence_pairs(tmp_path: Path) -> None:
    model = make_tiny_hf_classifier(tmp_path / "model", ["fresh", "rotten"], seed=2)
    test, calib = _frames(pairs=True)
    test.to_csv(tmp_path / "val.csv", index=False)
    calib.to_json(tmp_path / "calib.jsonl", orient="records", lines=True)
    run_dir = _run(
        tmp_path,
        ["--model", str(model), "--test", str(tmp_path / "val.csv"), "--calibration",
         str(tmp_path / "calib.jsonl"), "--text-column", "sentence", "--text-pair-column",
         "second", "--label-column", "y"],
    )  # fmt: skip
    _check_run(run_dir, CPU_BUILDS, _transformers_preds(model, test, "second"), test)


@pytest.mark.slow
def test_onnx_model_with_tokenizer(tmp_path: Path) -> None:
    from workbench.backends.onnxruntime.export import export_classifier
    from workbench.backends.pytorch.hf import inspect_hf_folder, load_hf_classifier
    from workbench.backends.pytorch.runner import model_input_names
    from workbench.data.tokenize import TextTokenizer

    model = make_tiny_hf_classifier(tmp_path / "model", ["fresh", "rotten"], seed=4)
    info = inspect_hf_folder(model)
    module = load_hf_classifier(info)
    tok = TextTokenizer.from_model_dir(model)
    onnx = export_classifier(module, tok, info.content_key, model_input_names(module)).onnx_path
    test, calib = _frames()
    test.to_csv(tmp_path / "val.csv", index=False)
    calib.to_csv(tmp_path / "calib.csv", index=False)
    run_dir = _run(
        tmp_path,
        ["--model", onnx, "--tokenizer", str(model), "--labels", "fresh,rotten", "--test",
         str(tmp_path / "val.csv"), "--calibration", str(tmp_path / "calib.csv"),
         "--text-column", "sentence", "--label-column", "y"],
    )  # fmt: skip
    builds = CPU_BUILDS - {"torch-fp32"}
    _check_run(run_dir, builds, _transformers_preds(model, test, None), test)
