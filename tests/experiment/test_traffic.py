"""Unlabelled traffic end to end: 240 labelled rows + 1,600 unlabelled Rotten Tomatoes rows whose
labels are held back. The run certifies (or not) from agreement alone and writes
disagreements.csv; labelling those rows from the held-back column settles the accuracy
question the 240 rows alone could not; the search keeps all 240 labelled rows for the verdict.

The model is a tiny random HF classifier whose head is a fitted probe: its decision boundary
sits just past the data, so INT8 (dynamic) flips a few percent of the predictions, as a real
quantized classifier does near its boundary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.cli import main

pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
pytestmark = pytest.mark.filterwarnings("ignore")
NAMES = ["rotten", "fresh"]
N_TEST, N_CALIB, N_TRAFFIC = 240, 140, 1600
LIMIT = 0.015


def _probe_head(model_dir: Path, texts: list[str]) -> None:
    """Point the head along the pooled embedding's top direction, boundary 1 sd past the data."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        enc = tok(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        x = model.bert(**enc).pooler_output.numpy()
        mu = x.mean(axis=0)
        w = np.linalg.svd(x - mu, full_matrices=False)[2][0]
        proj = (x - mu) @ w
        k, t = 3.0 / proj.std(), proj.min() - proj.std()
        model.classifier.weight[:] = torch.tensor(np.stack([-k * w / 2, k * w / 2]))
        model.classifier.bias[:] = torch.tensor([k * (w @ mu + t) / 2, -k * (w @ mu + t) / 2])
    model.save_pretrained(model_dir)


@pytest.fixture(scope="module")
def traffic_experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """experiment.toml (tiny model, 240 test rows, traffic.csv) and the held-back traffic labels."""
    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("traffic")
    model = make_tiny_hf_classifier(root / "model", ["fresh", "rotten"], seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(N_TEST + N_CALIB + N_TRAFFIC))
    df = pd.DataFrame({"sentence": ds["text"], "y": [NAMES[i] for i in ds["label"]]})
    _probe_head(model, list(df["sentence"].iloc[N_TEST : N_TEST + N_CALIB]))
    df.iloc[:N_TEST].to_csv(root / "val.csv", index=False)
    df.iloc[N_TEST : N_TEST + N_CALIB].to_csv(root / "calib.csv", index=False)
    traffic = df.iloc[N_TEST + N_CALIB :].reset_index(drop=True)
    traffic[["sentence"]].to_csv(root / "traffic.csv", index=False)  # the labels stay here
    exp = root / "experiment.toml"
    exp.write_text(
        f"""name = "traffic"
[model]
path = "model"
[data]
test = "val.csv"
calibration = "calib.csv"
text_column = "sentence"
label_column = "y"
unlabeled = "traffic.csv"
[calibration]
n = 64
compare = []
[[build]]
backend = "onnxruntime"
[[build]]
backend = "onnxruntime"
precision = "int8-dynamic"
[evaluate]
shapes = [[1, 32]]
iterations = 3
warmup = 1
max_seconds = 2
[gate]
baseline = "ort-fp32"
candidates = ["ort-int8-dynamic"]
[gate.policy]
max_accuracy_drop = {LIMIT}
latency_batch = 1
latency_seq = 32
""",
        encoding="utf-8",
    )
    return exp, traffic


def _checks(run_dir: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((run_dir / "gate.json").read_text())["checks"]}


def _run(exp: Path, reports: Path, run_id: str) -> tuple[int, Path]:
    args = ["run", str(exp), "--reports", str(reports), "--run-id", run_id, "--no-progress"]
    return main(args), reports / run_id


def test_traffic_certifies_then_labelled_disagreements_settle_the_gate(
    traffic_experiment, tmp_path, capsys
):
    exp, held_back = traffic_experiment
    code, run_dir = _run(exp, tmp_path / "reports", "r")
    out = capsys.readouterr().out
    rec = json.loads((run_dir / "traffic.json").read_text())
    cand = next(b for b in rec["builds"] if b["name"] == "ort-int8-dynamic")
    k, n = cand["disagreements"], rec["n"]
    assert n == N_TRAFFIC and 0 < k < n * 0.1
    checks = _checks(run_dir)
    certified = checks["traffic_certified"]
    assert certified["details"]["cp_upper"] == pytest.approx(cand["cp_upper"])
    assert f"n={N_TRAFFIC}" in certified["message"] and "pts with 95 % confidence" in out
    # the 240 labelled rows alone cannot tell: the CI reaches past the limit on both sides
    labelled = checks["accuracy_drop"]
    assert labelled["details"]["ci_low"] < -LIMIT <= labelled["details"]["ci_high"]
    assert labelled["status"] in ("fail", "inconclusive") and code in (1, 4)
    # disagreements.csv: text, both predictions (label names), an empty label column
    dis = pd.read_csv(run_dir / "disagreements.csv", dtype=str, keep_default_na=False)
    assert list(dis.columns) == ["text", "ort-fp32", "ort-int8-dynamic", "label"]
    assert len(dis) == k and set(dis["label"]) == {""}
    assert set(dis["ort-fp32"]) | set(dis["ort-int8-dynamic"]) <= set(NAMES)
    assert (dis["ort-fp32"] != dis["ort-int8-dynamic"]).all()
    calibset = json.loads((run_dir / "calibset_report.json").read_text())
    assert calibset["target"] == "unlabelled traffic (traffic.csv)"  # the same file serves it
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="traffic"' in html and _escaped(dis["text"].iloc[0]) in html

    # a person labels the disagreements (here: from the held-back column) and passes them back
    truth = dict(zip(held_back["sentence"], held_back["y"], strict=True))
    dis["label"] = [truth[t] for t in dis["text"]]
    filled = tmp_path / "filled.csv"
    dis.to_csv(filled, index=False)
    policy = tmp_path / "policy.toml"
    policy.write_text(f"max_accuracy_drop = {LIMIT}\nlatency_seq = 32\n", encoding="utf-8")
    gate = ["gate", "--baseline", f"{run_dir}/ort-fp32", "--candidate",
            f"{run_dir}/ort-int8-dynamic", "--policy", str(policy),
            "--disagreement-labels", str(filled)]  # fmt: skip
    code = main(gate)
    checks = _checks(run_dir)
    traffic = checks["traffic_accuracy"]
    assert traffic["status"] in ("pass", "fail")
    assert f"n={N_TRAFFIC} traffic rows, {k} labelled disagreements" in traffic["message"]
    # the exact change on the sample, from the held-back truth
    pb = pd.read_parquet(run_dir / "traffic" / "ort-fp32.parquet")["pred"].to_numpy()
    pc = pd.read_parquet(run_dir / "traffic" / "ort-int8-dynamic.parquet")["pred"].to_numpy()
    labels = json.loads((run_dir / "run.json").read_text())["labels"]
    y = np.array([labels.index(truth[t]) for t in held_back["sentence"]])
    assert traffic["details"]["diff"] == pytest.approx(np.mean(pc == y) - np.mean(pb == y))
    # the accuracy question is settled by the traffic, and the gate follows it
    assert checks["accuracy_drop"]["status"] == traffic["status"]
    assert checks["accuracy_drop"]["details"]["settled_by"] == "traffic_accuracy"
    assert code == (0 if traffic["status"] == "pass" else 1)
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Labels applied from" in report

    # the same labels through the experiment file give the same verdict
    text = exp.read_text().replace(
        'unlabeled = "traffic.csv"', f'unlabeled = "traffic.csv"\ndisagreement_labels = "{filled}"'
    )
    exp2 = exp.parent / "labelled.toml"
    exp2.write_text(text, encoding="utf-8")
    _, run2 = _run(exp2, tmp_path / "reports", "r2")
    assert _checks(run2)["traffic_accuracy"]["status"] == traffic["status"]


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_bad_disagreement_labels_exit_2_with_one_line(traffic_experiment, tmp_path, capsys):
    exp, held_back = traffic_experiment
    _, run_dir = _run(exp, tmp_path / "reports", "r")
    dis = pd.read_csv(run_dir / "disagreements.csv", dtype=str, keep_default_na=False)
    policy = tmp_path / "policy.toml"
    policy.write_text(f"max_accuracy_drop = {LIMIT}\nlatency_seq = 32\n", encoding="utf-8")
    before = (run_dir / "traffic.json").read_bytes()

    def gate(frame: pd.DataFrame) -> tuple[int, str]:
        path = tmp_path / "bad.csv"
        frame.to_csv(path, index=False)
        capsys.readouterr()
        code = main(["gate", "--baseline", f"{run_dir}/ort-fp32", "--candidate",
                     f"{run_dir}/ort-int8-dynamic", "--policy", str(policy),
                     "--disagreement-labels", str(path)])  # fmt: skip
        return code, capsys.readouterr().err.strip()

    ids = dis.assign(label="1")  # ids, not names
    code, err = gate(ids)
    assert code == 2 and len(err.splitlines()) == 1 and "unknown label" in err
    assert "rotten" in err and "Traceback" not in err
    other = dis.assign(label="fresh")
    other.loc[0, "text"] = held_back["sentence"].iloc[-1] + " (edited)"
    code, err = gate(other)
    assert code == 2 and len(err.splitlines()) == 1 and "does not match" in err
    code, err = gate(dis)  # empty labels
    assert code == 2 and "empty label" in err
    assert (run_dir / "traffic.json").read_bytes() == before  # nothing rewritten


def test_search_keeps_every_labelled_row_for_the_verdict(traffic_experiment, tmp_path):
    from workbench.results.records import load_record
    from workbench.results.search import SEARCH_FILE, SearchRecord

    exp, _ = traffic_experiment
    out = tmp_path / "search"
    args = ["search", str(exp), "--out", str(out), "--no-progress", "--methods", "max",
            "--max-float", "2", "--calibration-sets", str(tmp_path / "sets")]  # fmt: skip
    code = main(args)
    rec = load_record(SearchRecord, out / SEARCH_FILE)
    assert rec.n_gate == N_TEST  # no labelled row spent on the search
    assert rec.n_search == N_TRAFFIC // 2
    if rec.best is None:
        assert code == 1
        return
    assert rec.gate_check is not None and rec.gate_check.n == N_TEST
    t = rec.traffic_check
    assert t is not None and t.n_search + t.n_heldout == N_TRAFFIC
    assert t.status in ("pass", "inconclusive") and f"n={t.n_heldout}" in t.message
    assert "held-out traffic rows it never saw" in (out / "search.html").read_text()


def test_spec_keys_resolve_and_refuse_what_cannot_work(tmp_path):
    from workbench.errors import ConfigError
    from workbench.experiment.spec import parse_experiment

    data = {"model": {"path": "m"}, "data": {"test": "t.csv", "unlabeled": "traffic.csv"}}
    exp = parse_experiment(data, base_dir=tmp_path)
    assert exp.data.unlabeled == str(tmp_path / "traffic.csv")
    with pytest.raises(ConfigError, match="did you mean 'unlabeled'"):
        parse_experiment({"data": {"unlabelled": "x.csv"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs the traffic it labels"):
        parse_experiment(
            {"model": {"path": "m"}, "data": {"test": "t.csv", "disagreement_labels": "d.csv"}},
            base_dir=tmp_path,
        )
    pairs = {"model": {"path": "m"}, "data": {"test": "t.csv", "text_pair_column": "b",
             "unlabeled": "u.csv"}}  # fmt: skip
    with pytest.raises(ConfigError, match="text only"):
        parse_experiment(pairs, base_dir=tmp_path)
