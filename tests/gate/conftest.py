"""Gate fixtures: run directories with constructed paired predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.run_fixtures import flip_predictions, make_demo_run, paired_run


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A realistic four-build run (read-only: tests must not modify it)."""
    d = tmp_path_factory.mktemp("runs") / "demo"
    make_demo_run(d)
    return d


@pytest.fixture
def make_paired(tmp_path: Path):
    """``make_paired(n, n_b, n_c, **kw)`` -> run dir with builds 'base' and 'cand'."""

    def _make(n: int = 1000, n_b: int = 5, n_c: int = 5, name: str = "run", **kw) -> Path:
        labels = np.random.default_rng(0).integers(0, 2, n)
        base, cand = flip_predictions(labels, n_b, n_c)
        d = tmp_path / name
        paired_run(d, labels, base, cand, **kw)
        return d

    return _make
