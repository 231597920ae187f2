"""The fault suite's world: a tiny user experiment (random HF classifier, real texts) and helpers
that run the CLI in-process or as a child process and return (exit code, stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["rotten", "fresh"]
POLICY = """metric = "accuracy"
max_accuracy_drop = 0.5
min_samples = 10
bootstrap_resamples = 2000
"""


def experiment_toml(model: Path, builds: str = "") -> str:
    """An experiment of two cheap CPU builds (ORT FP32 and dynamic INT8) on 40 test texts."""
    builds = builds or (
        '[[build]]\nbackend = "onnxruntime"\nprecision = "fp32"\n'
        '[[build]]\nbackend = "onnxruntime"\nprecision = "int8-dynamic"\n'
    )
    return f"""name = "faults"
[model]
path = "{model}"
[data]
test = "val.csv"
calibration = "calib.csv"
max_length = 32
[calibration]
n = 16
compare = []
{builds}
[evaluate]
shapes = [[1, 32]]
iterations = 5
warmup = 1
max_seconds = 2.0
[gate]
baseline = "ort-fp32"
candidates = ["ort-int8-dynamic"]
policy = "policy.toml"
"""


@pytest.fixture(scope="session")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model/, val.csv (40 rows), calib.csv (60 rows), policy.toml, exp.toml."""
    pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("faults-user")
    make_tiny_hf_classifier(root / "model", NAMES, seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(100))
    df = pd.DataFrame({"text": ds["text"], "label": [NAMES[i] for i in ds["label"]]})
    df.iloc[:40].to_csv(root / "val.csv", index=False)
    df.iloc[40:].to_csv(root / "calib.csv", index=False)
    (root / "policy.toml").write_text(POLICY)
    (root / "exp.toml").write_text(experiment_toml(root / "model"))
    return root


@pytest.fixture(scope="session")
def done_run(user_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run (gated, reported) to attack with gate/report faults; copy before use."""
    from workbench.cli import main

    reports = tmp_path_factory.mktemp("faults-reports")
    code = main(run_args(user_dir, reports, "done"))
    assert code in (0, 1, 4), code
    return reports / "done"


def run_args(user_dir: Path, reports: Path, run_id: str | None, *extra: str) -> list[str]:
    """``workbench run`` arguments writing under ``reports`` (calibration sets beside it)."""
    args = ["run", str(user_dir / "exp.toml"), "--reports", str(reports), "--no-progress"]
    args += ["--calibration-sets", str(reports.parent / f"{reports.name}-calib")]
    return [*args, *(["--run-id", run_id] if run_id is not None else []), *extra]


def cli(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI in this process; (exit code, stderr stripped)."""
    from workbench.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


def error_line(err: str) -> str:
    """The one ``error:`` line of stderr (log lines may precede it); fails if there is none."""
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def child(args: Sequence[str], cache: Path, **kw: object) -> subprocess.Popen[str]:
    """``python -m workbench ARGS`` as a child process with its own cache folder."""
    env = {**os.environ, "WORKBENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "workbench", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[arg-type]
    )
