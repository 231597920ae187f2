"""The benchmarks' way to run ``workbench search`` and the gate's judge on a row.

``search_default`` runs the search (every kind of build) on the shipped demo experiment, whose
test split the benchmark halves the same way (``search_halves``), so the searched build is
judged on rows the search never saw. ``search_second_model`` trains a tiny BERT classifier
(``tests/tiny_families.py``) on Rotten Tomatoes rows and searches it on disjoint rows.
``judge_row`` is the gate's one judge (``judge_labelled``) on one build's predictions.

Example::

    info, model = search_default(Path("/tmp/search"), max_float=4)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# shuffled Rotten Tomatoes rows (seed 5): make_family_classifier's 480, then fine-tuning,
# test (a 2,000-row gate half: enough for the gate to decide a 1-point limit) and calibration
SECOND_ROWS = (480, 3480, 7480, 7880)
SECOND_EPOCHS = 2


def search_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(search, gate) row indices exactly as ``workbench search`` halves a test split."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def judge_row(labels: np.ndarray, ref_logits: np.ndarray, logits: np.ndarray, policy) -> Any:
    """The gate's verdict (``GateDecision``) on ``logits`` vs the FP32 reference."""
    from workbench.gate import Labelled, judge_labelled
    from workbench.results.predictions import Predictions

    idx = np.arange(len(labels), dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)

    def preds(name: str, lg: np.ndarray) -> Predictions:
        return Predictions(name, idx, y, lg.argmax(1).astype(np.int64), lg)

    return judge_labelled(
        Labelled("ort-fp32", "candidate", preds("ort-fp32", ref_logits), preds("cand", logits)),
        policy,
    )


def demo_policy():
    from workbench.experiment.spec import load_experiment, shipped_experiment

    return load_experiment(shipped_experiment("demo")).gate.policy


# (name, precision, graph, recovery): what a user gets from [[build]] tables
REGISTRY_BUILDS = (
    ("ort-int8-static", "int8-static", "plain", ()),  # the demo's gated build until 2026-12-05
    ("ort-int8-static-fused", "int8-static", "fused", ()),
    ("ort-int8-dynamic", "int8-dynamic", "plain", ()),
    ("ort-int8-dynamic-fused", "int8-dynamic", "fused", ()),
    ("ort-fp32-fused", "fp32", "fused", ()),
)


def demo_gated_build() -> tuple[str, str, str, tuple[str, ...]]:
    """The shipped demo's gated build as a ``REGISTRY_BUILDS`` row, read from demo.toml (the
    search's choice on the default classifier: ``ort-int8-searched``)."""
    from workbench.experiment.spec import load_experiment, shipped_experiment

    exp = load_experiment(shipped_experiment("demo"))
    b = next(b for b in exp.builds if b.name == exp.gate.candidates[0])
    return b.name, b.precision, b.graph, b.recovery


def registry_builds(
    model_dir: str, onnx: str, table_file: str, tokenizer_file: str, calibration=None
) -> list[tuple[str, str, str, str]]:
    """(name, model path, precision, detail) of each ``REGISTRY_BUILDS`` entry and the demo's
    gated build, built through the backend registry exactly as ``workbench run`` builds it
    (per-channel weights; ``calibration``: a callable giving the calibration feeds, for
    SmoothQuant)."""
    from workbench.backends.registry import BuildRequest, get_backend
    from workbench.fileio import cache_root

    backend, out = get_backend("onnxruntime"), []
    for name, precision, graph, recovery in (*REGISTRY_BUILDS, demo_gated_build()):
        req = BuildRequest(
            name=name, backend="onnxruntime", device="cpu", precision=precision,
            compile=False, cuda_graphs=False, fp32_onnx=onnx, torch_model=model_dir,
            tokenizer_file=tokenizer_file, max_length=128, table_file=table_file,
            method="max", calibrator="workbench", per_channel=True, exclude=(),
            cache_dir=str(cache_root() / "builds"), graph=graph, recovery=recovery,
        )  # fmt: skip
        art = backend.build(req, calibration)
        out.append((name, art.model_path, precision, art.detail))
    return out


def load_search(out: Path) -> tuple[dict, Path | None]:
    """A finished ``workbench search`` folder: its summary and the chosen ORT model."""
    from workbench.results.records import load_record
    from workbench.results.search import SEARCH_FILE, SearchRecord

    return _summary(load_record(SearchRecord, out / SEARCH_FILE), out)


def _run(exp, out: Path, max_float: int, calib_root: Path) -> tuple[dict, Path | None]:
    from workbench.experiment.search import SearchOptions, run_search

    opts = SearchOptions(
        out_dir=str(out), calibration_root=str(calib_root), max_float=max_float, progress=False
    )
    rec, out = run_search(exp, opts)
    return _summary(rec, out)


def _summary(rec, out: Path) -> tuple[dict, Path | None]:
    from workbench.experiment.search_core import Candidate
    from workbench.results.serde import to_dict

    info = {
        "configurations": rec.configurations,
        "not_searched": rec.not_searched,
        "n_scored": len(rec.trials),
        "n_search": rec.n_search,
        "n_gate": rec.n_gate,
        "seconds": rec.seconds,
        "fp32_latency_ms": rec.fp32_latency_ms,
        "best": to_dict(rec.best) if rec.best else None,
        "gate_check": to_dict(rec.gate_check) if rec.gate_check else None,
        "pareto": [to_dict(t) for t in rec.pareto],
    }
    if rec.best is None:
        return info, None
    b = rec.best
    cand = Candidate(
        b.method, b.per_channel, tuple(b.float_nodes), b.kind, b.graph, tuple(b.recovery)
    )
    info["label"] = cand.label
    model = out / ("best.onnx" if "best.onnx" in rec.files else "best.ort.onnx")
    if not model.is_file():  # a plain static build: the ORT model (private Q/DQ pairs)
        from workbench.backends.onnxruntime.fusion import unshare_dequantize

        unshare_dequantize(out / "best.qdq.onnx", model)
    return info, model


def search_default(out: Path, max_float: int) -> tuple[dict, Path | None]:
    """``workbench search`` on the shipped demo experiment (the default classifier)."""
    from workbench.experiment.spec import load_experiment, shipped_experiment

    exp = load_experiment(shipped_experiment("demo"))
    return _run(exp, out, max_float, out.parent / "calibration_sets")


def search_second_model(root: Path, max_float: int) -> dict:
    """Train a tiny BERT classifier here, then search it on rows it never trained on."""
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from tests.tiny_bert import fine_tune_briefly
    from tests.tiny_families import LABELS, make_family_classifier
    from workbench.data.datasets import load_rotten_tomatoes
    from workbench.experiment.spec import parse_experiment

    model = root / "tiny-bert"
    ds = load_rotten_tomatoes().dataset.shuffle(seed=5)  # the rows tiny_families trains on
    a, b, c, d = SECOND_ROWS
    if not (model / "config.json").is_file():
        make_family_classifier(model, "bert", seed=0)
        tune = ds.select(range(a, b))
        fine_tune_briefly(model, list(tune["text"]), list(tune["label"]), epochs=SECOND_EPOCHS)
    for name, rows in (("test", range(b, c)), ("calib", range(c, d))):
        part = ds.select(rows)
        pd.DataFrame({"text": part["text"], "label": [LABELS[i] for i in part["label"]]}).to_csv(
            root / f"{name}.csv", index=False
        )
    exp = parse_experiment(
        {
            "name": "second-model",
            "model": {"path": str(model)},
            "data": {"test": str(root / "test.csv"), "calibration": str(root / "calib.csv")},
            "calibration": {"n": 256},
            "gate": {"baseline": "ort-fp32", "candidates": ["ort-int8-static"]},
        },
        base_dir=root,
        source="second-model",
    )
    info, _ = _run(exp, root / "search", max_float, root / "calibration_sets")
    info["model"] = (
        f"tiny BERT (tests/tiny_families.py: 2 layers, hidden 64), fine-tuned {SECOND_EPOCHS} "
        f"epochs on {b - a} Rotten Tomatoes rows; test {c - b} rows, calibration {d - c}"
    )
    return info
