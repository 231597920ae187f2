"""Per-sample predictions of a build, read from the run's Parquet file, and pairing by ``idx``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import ResultsError
from workbench.results.records import BuildResult

PRED_COLUMNS = ("idx", "label", "pred", "logits")
TEST_SAMPLES_FILE = "test_samples.parquet"


@dataclass(frozen=True)
class Predictions:
    """One build's predictions, sorted by sample index."""

    build: str
    idx: np.ndarray  # int64 (n,)
    label: np.ndarray  # int64 (n,)
    pred: np.ndarray  # int64 (n,)
    logits: np.ndarray  # float64 (n, classes)

    def __len__(self) -> int:
        return int(self.idx.shape[0])


def load_predictions(run_dir: str | Path, build: BuildResult) -> Predictions:
    """Read ``build``'s predictions file (idx, label, pred, logits); ResultsError if unusable."""
    import pandas as pd

    if build.accuracy is None:
        raise ResultsError(f"build {build.name} has no accuracy result, so no predictions")
    path = Path(run_dir) / build.accuracy.predictions_file
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError as exc:
        raise ResultsError(
            f"predictions of {build.name} are missing ({path}); re-run the evaluation"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ResultsError(f"predictions file {path} is unreadable ({exc})") from exc
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path} lacks column(s) {missing}; re-run the evaluation")
    df = df.sort_values("idx", kind="stable")
    idx = df["idx"].to_numpy(dtype=np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ResultsError(f"{path} repeats sample indices; the file is corrupt")
    try:
        logits = np.stack([np.asarray(v, dtype=np.float64) for v in df["logits"]])
    except ValueError as exc:
        raise ResultsError(f"{path}: logits rows differ in length ({exc})") from exc
    if len(df) == 0:
        logits = np.zeros((0, 0))
    return Predictions(
        build=build.name,
        idx=idx,
        label=df["label"].to_numpy(dtype=np.int64),
        pred=df["pred"].to_numpy(dtype=np.int64),
        logits=logits,
    )


def pair(baseline: Predictions, candidate: Predictions) -> tuple[Predictions, Predictions]:
    """Check two builds predicted the same samples with the same labels; ResultsError if not."""
    if baseline.idx.shape != candidate.idx.shape or not np.array_equal(baseline.idx, candidate.idx):
        only_b = np.setdiff1d(baseline.idx, candidate.idx).size
        only_c = np.setdiff1d(candidate.idx, baseline.idx).size
        raise ResultsError(
            f"{baseline.build} and {candidate.build} predicted different samples "
            f"({only_b} only in the baseline, {only_c} only in the candidate); "
            "evaluate both on the same test split"
        )
    bad = int(np.sum(baseline.label != candidate.label))
    if bad:
        raise ResultsError(
            f"{baseline.build} and {candidate.build} disagree on the true label of {bad} samples; "
            "the test sets are not the same"
        )
    return baseline, candidate


def load_test_texts(run_dir: str | Path) -> dict[int, str]:
    """``idx -> text`` from the run's test_samples.parquet ({} when the file is absent)."""
    import pandas as pd

    path = Path(run_dir) / TEST_SAMPLES_FILE
    if not path.is_file():
        return {}
    try:
        df = pd.read_parquet(path, columns=["idx", "text"])
    except (OSError, ValueError, KeyError) as exc:
        raise ResultsError(f"{path} is unreadable or lacks idx/text ({exc})") from exc
    return {int(i): str(t) for i, t in zip(df["idx"], df["text"], strict=True)}
