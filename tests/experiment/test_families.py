"""Every BERT family through the whole loop: `workbench init` + `workbench run` + `search` on CPU.

Per family a tiny trained classifier with a tokenizer of its kind (tests/tiny_families.py),
real Rotten Tomatoes texts in CSV files. Oracles: transformers' own tokenizer and model per
sample; ONNX Runtime's optimized graph for the INT8 coverage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.tiny_families import FAMILIES, LABELS, make_family_classifier
from workbench.cli import main

pytest.importorskip("torch", reason="the user-model path needs torch (extra: torch)")
pytestmark = pytest.mark.filterwarnings("ignore")
MIN_INT8_SHARE = 0.9
N_TEST = 120
# families whose search tries every recovery option (the others: ~4x faster, the same ranking):
# BERT for the fused graph, DeBERTa-v2 (disentangled attention) and ModernBERT (no biases,
# gated FFN) for the layouts least like it
FULL_SPACE = ("bert", "deberta-v2", "modernbert")


@dataclass(frozen=True)
class FamilyRun:
    """One family's model folder, experiment file, test rows and finished run folder."""

    family: str
    model: Path
    experiment: Path
    test: pd.DataFrame
    run_dir: Path
    code: int


def _write_experiment(root: Path, model: Path) -> tuple[Path, pd.DataFrame]:
    from workbench.data.datasets import load_rotten_tomatoes

    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(1000, 1000 + N_TEST + 140))
    df = pd.DataFrame({"sentence": ds["text"], "y": [LABELS[i] for i in ds["label"]]})
    test = df.iloc[:N_TEST].reset_index(drop=True)
    test.to_csv(root / "val.csv", index=False)
    df.iloc[N_TEST:].to_csv(root / "calib.csv", index=False)
    exp = root / "experiment.toml"
    args = ["init", "--model", str(model), "--test", str(root / "val.csv"), "--calibration",
            str(root / "calib.csv"), "--text-column", "sentence", "--label-column", "y",
            "--out", str(exp)]  # fmt: skip
    assert main(args) == 0
    text = exp.read_text(encoding="utf-8")
    # the cheapest run that still builds everything: no side-by-side methods, one short shape
    text = text.replace('compare = ["entropy", "percentile-99.99", "max", "mse"]', "compare = []")
    text = text.replace("shapes = [[1, 128], [8, 128]]", "shapes = [[8, 32]]")
    exp.write_text(text, encoding="utf-8")
    return exp, test


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_run(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FamilyRun]:
    root = tmp_path_factory.mktemp(request.param)
    model = make_family_classifier(root / "model", request.param, seed=1)
    exp, test = _write_experiment(root, model)
    reports = root / "reports"
    cwd = os.getcwd()
    os.chdir(root)  # tests never write into the working directory (calibration_sets/)
    try:
        code = main(
            ["run", str(exp), "--quick", "--reports", str(reports), "--run-id", "r",
             "--no-progress"]
        )  # fmt: skip
        yield FamilyRun(request.param, model, exp, test, reports / "r", code)
    finally:
        os.chdir(cwd)


def _transformers_preds(model_dir: Path, texts: list[str]) -> list[str]:
    """Independent oracle: transformers' own tokenizer and model on the same rows."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    enc = tok(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits.numpy()
    return [model.config.id2label[int(i)] for i in logits.argmax(axis=1)]


def test_fp32_builds_equal_transformers_per_sample(family_run: FamilyRun) -> None:
    from workbench.results.records import load_run

    assert family_run.code in (0, 1, 4)  # 1 failed, 4 inconclusive (120 rows < 200 minimum)
    run = load_run(family_run.run_dir)
    assert {b.name for b in run.builds} >= {"torch-fp32", "ort-fp32", "ort-int8-static"}
    want = _transformers_preds(family_run.model, list(family_run.test["sentence"]))
    assert len(set(want)) == 2, "the tiny model must not predict one class only"
    for name in ("torch-fp32", "ort-fp32"):
        b = run.build(name)
        assert b.accuracy is not None and b.accuracy.n == N_TEST
        preds = pd.read_parquet(family_run.run_dir / b.accuracy.predictions_file)
        assert [run.labels[i] for i in preds["pred"]] == want, name
    truth = np.array(family_run.test["y"])
    acc = run.build("ort-fp32").accuracy
    assert acc is not None and acc.accuracy == pytest.approx(np.mean(np.array(want) == truth))


def test_static_and_dynamic_int8_cover_the_matmuls(family_run: FamilyRun) -> None:
    from workbench.results.records import load_run

    run = load_run(family_run.run_dir)
    for name in ("ort-int8-static", "ort-int8-dynamic"):
        cov = run.build(name).int8_coverage
        assert cov is not None and cov.quantized_matmul > 0, name
        assert cov.share >= MIN_INT8_SHARE, f"{family_run.family} {name}: {cov}"


def test_export_takes_exactly_the_models_inputs(family_run: FamilyRun) -> None:
    import onnx
    import transformers

    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    ws = Workspace.open(load_experiment(family_run.experiment))
    graph = onnx.load(ws.export.onnx_path, load_external_data=False).graph
    assert tuple(i.name for i in graph.input) == ws.input_names
    made = transformers.AutoTokenizer.from_pretrained(family_run.model).model_input_names
    assert set(ws.input_names) <= set(made)
    assert set(ws.tokenizer.encode(["a fine film"])) == set(ws.input_names)
    takes_types = family_run.family in ("bert", "electra")  # the families with a type embedding
    assert ("token_type_ids" in ws.input_names) == takes_types


def test_search_completes_and_names_the_models_modules(
    family_run: FamilyRun, tmp_path: Path
) -> None:
    import torch  # noqa: F401  (module names are checked against the loaded classifier)

    from workbench.backends.pytorch.hf import inspect_hf_folder, load_hf_classifier
    from workbench.results.records import load_record
    from workbench.results.search import SEARCH_FILE, SearchRecord

    out = tmp_path / "search"
    args = ["search", str(family_run.experiment), "--quick", "--out", str(out), "--no-progress",
            "--calibration-sets", str(tmp_path / "sets"), "--methods", "max",
            "--max-float", "1"]  # fmt: skip
    if family_run.family not in FULL_SPACE:  # static and dynamic, plain graph, no recovery
        args.append("--no-recovery")
    assert main(args) in (0, 1, 4)
    rec = load_record(SearchRecord, out / SEARCH_FILE)
    assert rec.trials and len(rec.ranking) >= 10
    hf = load_hf_classifier(inspect_hf_folder(family_run.model)).model
    modules = {name for name, _ in hf.named_modules()}
    linears = [m for m in rec.ranking if not m.rsplit(".", 1)[-1].startswith("MatMul")]
    named = [m for m in linears if m in modules]
    assert len(named) >= 0.75 * len(linears), f"not the model's module names: {rec.ranking}"


def test_an_onnx_file_is_fed_the_inputs_of_its_graph(family_run: FamilyRun, tmp_path: Path) -> None:
    import onnx

    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    onnx_path = Workspace.open(load_experiment(family_run.experiment)).export.onnx_path
    root, exp = family_run.experiment.parent, tmp_path / "onnx.toml"
    args = ["init", "--model", onnx_path, "--tokenizer", str(family_run.model), "--labels",
            ",".join(LABELS), "--test", str(root / "val.csv"), "--calibration",
            str(root / "calib.csv"), "--text-column", "sentence", "--label-column", "y",
            "--out", str(exp)]  # fmt: skip
    assert main(args) == 0
    ws = Workspace.open(load_experiment(exp))
    graph = onnx.load(onnx_path, load_external_data=False).graph
    assert ws.input_names == tuple(i.name for i in graph.input)
    feed = ws.tokenizer.encode(list(family_run.test["sentence"][:8]))
    assert tuple(feed) == ws.input_names
    with OrtRunner(onnx_path) as r:
        assert r.infer(feed)["logits"].shape == (8, len(LABELS))


def test_gpu_builds_map_every_linear_and_the_layer_stack(family_run: FamilyRun) -> None:
    """The CPU side of the FP8 / INT8 GPU builds: every Linear the export runs gets a range
    from the calibration table (lowp_map), the quantized model runs (float64 reference path),
    and the per-layer compile finds the family's layer stack."""
    import torch

    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.backends.pytorch.hf import inspect_hf_folder, load_hf_classifier
    from workbench.backends.pytorch.lowp import QuantLinear, set_simulate
    from workbench.backends.pytorch.lowp_map import linear_inputs, quantize_from_table
    from workbench.backends.pytorch.runner import layer_stack
    from workbench.calibration.table import calibrate
    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    ws = Workspace.open(load_experiment(family_run.experiment))
    feeds = [ws.tokenizer.encode(ws.texts[i : i + 16]) for i in range(0, 48, 16)]
    table = calibrate(ws.export.onnx_path, feeds, "max", open_runner=open_ort_runner)
    model = load_hf_classifier(inspect_hf_folder(family_run.model))
    stack = layer_stack(model)
    assert stack is not None and type(stack[0]).__name__ != "ModuleList"
    q = set_simulate(quantize_from_table(model, table, ws.export.onnx_path, "int8-static"), True)
    quantized = {n for n, m in q.named_modules() if isinstance(m, QuantLinear)}
    assert quantized == set(linear_inputs(ws.export.onnx_path))
    with torch.no_grad():
        logits = q(**{k: torch.from_numpy(v) for k, v in feeds[0].items()})
    assert torch.isfinite(logits).all() and logits.shape == (16, len(LABELS))
