"""Experiment fixtures: a user's experiment (tiny HF classifier + real texts in CSV files) and a
tiny BERT with a planted bad layer, a fitted probe head, and search/gate splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.calibration.conftest import random_texts

PLANTED_LAYER = 1
PLANTED_NODE = f"/inner/encoder/encoder/layer.{PLANTED_LAYER}/output/dense/MatMul"
OUTLIER_SCALE = 300.0  # two intermediate channels blow up by this factor
BRANCH_GAIN = 30.0  # the planted FFN branch outweighs the residual, so its damage shows


@dataclass(frozen=True)
class Planted:
    """The planted model and its data: calibration, search and gate splits (disjoint texts)."""

    onnx_path: Path
    calib: list[dict[str, np.ndarray]]
    search: list[dict[str, np.ndarray]]
    search_labels: np.ndarray
    gate: list[dict[str, np.ndarray]]
    gate_labels: np.ndarray


def _pooled(model, feeds, tensor: str) -> np.ndarray:
    import onnxruntime as ort
    from onnx import helper

    model = type(model).FromString(model.SerializeToString())
    model.graph.output.append(helper.make_empty_tensor_value_info(tensor))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run([tensor], f)[0] for f in feeds])


def plant_bad_layer(src: Path, out: Path, fit_feeds) -> Path:
    """Fit a 2-class probe head on the pooled embedding, then plant outliers in one FFN."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float32)

    def put(name: str, a: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))

    head = nodes["/inner/head/Gemm"]
    x = _pooled(model, fit_feeds, head.input[0])
    mu = x.mean(axis=0)
    w = np.linalg.svd(x - mu, full_matrices=False)[2][0]  # top principal direction
    k = 3.0 / float(((x - mu) @ w).std())
    put(head.input[1], np.stack([-k * w / 2, k * w / 2]))
    put(head.input[2], np.array([k * (w @ mu) / 2, -k * (w @ mu) / 2]))
    up = nodes[f"/inner/encoder/encoder/layer.{PLANTED_LAYER}/intermediate/dense/MatMul"]
    w_up = get(up.input[1])
    w_up[:, :2] *= OUTLIER_SCALE
    put(up.input[1], w_up)
    w_down = get(nodes[PLANTED_NODE].input[1]) * BRANCH_GAIN
    w_down[:2, :] /= OUTLIER_SCALE
    put(nodes[PLANTED_NODE].input[1], w_down)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="session")
def planted(tiny_onnx, tiny_model, tmp_path_factory) -> Planted:
    from workbench.data.tokenize import TextTokenizer
    from workbench.evaluate.scorer import model_logits

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    feeds = [tok.encode(random_texts(16, seed=100 + s)) for s in range(14)]
    out = plant_bad_layer(tiny_onnx, tmp_path_factory.mktemp("planted") / "m.onnx", feeds[:2])
    search, gate = feeds[2:8], feeds[8:14]
    # the random model has no task: labels are its own FP32 predictions (accuracy = agreement)
    return Planted(
        out,
        feeds[:2],
        search,
        model_logits(out, search).argmax(axis=1),
        gate,
        model_logits(out, gate).argmax(axis=1),
    )


NAMES = ["rotten", "fresh"]


@pytest.fixture(scope="module")
def user_experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """experiment.toml for a tiny HF folder, a 120-row test CSV and a 140-row calibration CSV."""
    pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.cli import main
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("user")
    model = make_tiny_hf_classifier(root / "model", ["fresh", "rotten"], seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(260))
    df = pd.DataFrame({"sentence": ds["text"], "y": [NAMES[i] for i in ds["label"]]})
    df.iloc[:120].to_csv(root / "val.csv", index=False)
    df.iloc[120:].to_csv(root / "calib.csv", index=False)
    exp = root / "experiment.toml"
    args = ["init", "--model", str(model), "--test", str(root / "val.csv"), "--calibration",
            str(root / "calib.csv"), "--text-column", "sentence", "--label-column", "y",
            "--out", str(exp)]  # fmt: skip
    assert main(args) == 0
    return exp


# The comparison tests share the calibration tests' tiny-model feeds.
from tests.calibration.conftest import calib_texts, tiny_tokenizer, unpadded_feeds  # noqa: E402, F401
