"""Score every build on the unlabelled traffic rows; write predictions, disagreements, the record.

The rows go through the same scorer as the test split (``predict_logits`` on each build's
Runner); logits are cached by content like the test logits. The rows where a gated build
disagrees with the baseline go to ``disagreements.csv`` for a person to label; labels given
back (``[data] disagreement_labels``) must name exactly those rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.fileio import atomic_write_with, build_entry, cache_root, reuse_entry, sha256_json
from workbench.results.records import SCHEMA_VERSION
from workbench.results.serde import to_dict
from workbench.results.traffic import (
    DISAGREEMENTS_FILE,
    TRAFFIC_DIR,
    DisagreementRow,
    TrafficRecord,
    TrafficResult,
    save_traffic,
)

if TYPE_CHECKING:
    from workbench.experiment.measure import BuildMeasurement
    from workbench.experiment.progress import Stages
    from workbench.experiment.workspace import Workspace


def traffic_builds(ws: Workspace, names: list[str], reference: str) -> tuple[str, list[str]]:
    """The baseline and the builds compared with it: the gate's, else the reference and the rest."""
    g = ws.exp.gate
    if g.enabled and g.baseline in names:
        return g.baseline, [c for c in g.candidates if c in names]
    return reference, [n for n in names if n != reference]


def score_traffic(
    ws: Workspace,
    measured: dict[str, BuildMeasurement],
    reference: str,
    run_dir: Path,
    st: Stages,
) -> TrafficRecord:
    """Predict every build on the traffic; write traffic/*.parquet, disagreements.csv and
    traffic.json. A labels file that does not match the disagreements raises DataError."""
    from workbench.data.traffic import check_labelled_texts

    assert ws.traffic is not None
    texts, names = ws.traffic_texts, list(ws.model.labels)
    preds = {n: _logits(ws, m, st) for n, m in measured.items()}
    baseline, gated = traffic_builds(ws, list(measured), reference)
    base = preds[baseline].argmax(axis=1)
    rows = np.flatnonzero(np.any([preds[c].argmax(axis=1) != base for c in gated], axis=0))
    labels = ws.disagreement_labels
    if ws.exp.data.disagreement_labels:
        check_labelled_texts(labels, [texts[i] for i in rows], ws.exp.data.disagreement_labels)
    policy = ws.exp.gate.policy
    conf = policy.confidence if policy is not None else 0.95
    by_idx = {int(i): names.index(labels[texts[i]]) for i in rows if texts[i] in labels}
    results = []
    for name, logits in preds.items():
        rel = f"{TRAFFIC_DIR}/{name}.parquet"
        _save_preds(run_dir / rel, logits)
        results.append(_result(name, baseline, base, logits.argmax(axis=1), by_idx, conf, rel))
    shown = [baseline, *gated]
    disagreements = [
        DisagreementRow(
            idx=int(i),
            text=texts[i],
            predictions={n: names[int(preds[n][i].argmax())] for n in shown},
            label=labels.get(texts[i], ""),
        )
        for i in rows
    ]
    _write_disagreements(run_dir / DISAGREEMENTS_FILE, disagreements, shown)
    record = TrafficRecord(
        schema_version=SCHEMA_VERSION,
        source=ws.traffic.source_path,
        source_sha256=ws.traffic.source_sha256,
        n=len(texts),
        baseline=baseline,
        labels=names,
        builds=results,
        disagreements=disagreements,
        disagreements_file=DISAGREEMENTS_FILE,
        labels_file=ws.exp.data.disagreement_labels,
    )
    save_traffic(record, run_dir)
    return record


def _result(
    name: str,
    baseline: str,
    base: np.ndarray,
    pred: np.ndarray,
    labels: dict[int, int],
    confidence: float,
    predictions_file: str,
) -> TrafficResult:
    from workbench.gate.traffic import cp_upper

    k = int(np.sum(pred != base))
    n_lab, b_right, c_right = _label_counts(base, pred, labels)
    return TrafficResult(
        name=name,
        baseline=baseline,
        n=len(pred),
        disagreements=k,
        disagreement_rate=k / len(pred),
        cp_upper=cp_upper(k, len(pred), confidence),
        confidence=confidence,
        labelled=n_lab,
        baseline_right=b_right,
        candidate_right=c_right,
        predictions_file=predictions_file,
    )


def _label_counts(
    base: np.ndarray, pred: np.ndarray, labels: dict[int, int]
) -> tuple[int, int, int]:
    """Among the rows where ``pred`` differs from ``base`` and a label is known: how many,
    how many the baseline got right, how many the build got right."""
    known = [(i, labels[i]) for i in np.flatnonzero(pred != base).tolist() if i in labels]
    return (
        len(known),
        sum(int(base[i] == k) for i, k in known),
        sum(int(pred[i] == k) for i, k in known),
    )


def _write_disagreements(path: Path, rows: list[DisagreementRow], builds: list[str]) -> None:
    """text, one column per build (baseline first; label names), and the label to fill in."""
    df = pd.DataFrame(
        {
            "text": [r.text for r in rows],
            **{b: [r.predictions[b] for r in rows] for b in builds},
            "label": [r.label for r in rows],
        },
        columns=["text", *builds, "label"],
    )
    atomic_write_with(path, lambda tmp: df.to_csv(tmp, index=False))


def _save_preds(path: Path, logits: np.ndarray) -> None:
    df = pd.DataFrame(
        {
            "idx": np.arange(len(logits), dtype=np.int64),
            "pred": logits.argmax(axis=1).astype(np.int64),
            "logits": [row.astype(float).tolist() for row in logits],
        }
    )
    atomic_write_with(path, lambda tmp: df.to_parquet(tmp, index=False))


def _logits(ws: Workspace, m: BuildMeasurement, st: Stages) -> np.ndarray:
    """A build's traffic logits through its Runner (cached by artifact and traffic content)."""
    from workbench.backends.registry import get_backend
    from workbench.evaluate.accuracy import predict_logits
    from workbench.experiment.measure import EVAL_VERSION, _save_npy

    assert ws.traffic is not None
    req = m.request
    key = sha256_json(
        {
            "artifact": m.artifact.model_sha256,
            "req": {k: v for k, v in to_dict(req).items() if k != "cache_dir"},
            "traffic": ws.traffic.source_sha256,
            "n": len(ws.traffic_texts),
            "v": EVAL_VERSION,
        }
    )[:20]
    file = cache_root() / "traffic" / key / "logits.npy"
    if reuse_entry(file.parent, f"traffic logits of {req.name}"):
        return np.load(file)
    with st.stage(f"traffic {req.name}") as bar:
        runner = get_backend(req.backend).open_runner(req, m.artifact, ws.exp.evaluate.threads)
        with runner:
            logits = predict_logits(
                runner, ws.traffic_texts, ws.tokenizer, progress=st.callback(bar)
            )
    logits = logits.astype(np.float32)
    if not np.all(np.isfinite(logits)):
        from workbench.errors import ModelError

        bad = int(np.argwhere(~np.isfinite(logits))[0][0])
        raise ModelError(f"{req.name} produced NaN/Inf logits (first at traffic row {bad})")
    build_entry(file, lambda tmp: _save_npy(tmp, logits))
    return logits


def apply_disagreement_labels(run_dir: Path, labels_file: str | Path) -> TrafficRecord:
    """Put a filled-in disagreements.csv into a finished run's traffic record (``workbench gate
    --disagreement-labels``); checked completely before anything is rewritten."""
    from dataclasses import replace

    from workbench.data.traffic import check_labelled_texts, read_disagreement_labels
    from workbench.errors import ConfigError, ResultsError
    from workbench.results.traffic import load_traffic_record

    rec = load_traffic_record(run_dir)
    if rec is None:
        raise ConfigError(
            f"--disagreement-labels: {run_dir} has no traffic.json; run the experiment with "
            "[data] unlabeled = <traffic file> first"
        )
    labels = read_disagreement_labels(labels_file, rec.labels)
    check_labelled_texts(labels, [r.text for r in rec.disagreements], str(labels_file))
    rows = [replace(r, label=labels[r.text]) for r in rec.disagreements]
    by_idx = {r.idx: rec.labels.index(r.label) for r in rows}
    base_result = rec.build(rec.baseline)
    if base_result is None:
        raise ResultsError(f"{run_dir}/traffic.json has no baseline {rec.baseline!r}; re-run")
    base = pd.read_parquet(run_dir / base_result.predictions_file)["pred"].to_numpy()
    builds = []
    for b in rec.builds:
        pred = pd.read_parquet(run_dir / b.predictions_file)["pred"].to_numpy()
        n_lab, b_right, c_right = _label_counts(base, pred, by_idx)
        builds.append(replace(b, labelled=n_lab, baseline_right=b_right, candidate_right=c_right))
    new = replace(rec, builds=builds, disagreements=rows, labels_file=str(Path(labels_file)))
    shown = list(rows[0].predictions) if rows else [rec.baseline]
    _write_disagreements(run_dir / rec.disagreements_file, rows, shown)
    save_traffic(new, run_dir)
    return new
