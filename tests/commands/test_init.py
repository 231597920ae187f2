"""`workbench init`: it checks what `run` checks, writes TOML with a library, and leaves
nothing on disk when it refuses. Tiny HF models made in the test, real Rotten Tomatoes texts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main

pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
pytestmark = pytest.mark.filterwarnings("ignore")
NAMES = ["neg", "pos"]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model/ (2 labels), encoder/ (no head), test.csv (60 rows), calib.csv (400 rows, one of
    them a duplicate), three.csv (3 labels) and data.csv (200 rows)."""
    from tests.tiny_bert import make_tiny_hf_classifier, make_tiny_hf_encoder
    from workbench.data.datasets import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("init-user")
    make_tiny_hf_classifier(root / "model", NAMES, seed=1)
    make_tiny_hf_encoder(root / "encoder", seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=5).select(range(660))
    df = pd.DataFrame({"text": ds["text"], "label": [NAMES[i] for i in ds["label"]]})
    df = df.drop_duplicates("text").reset_index(drop=True)
    df.iloc[:60].to_csv(root / "test.csv", index=False)
    calib = df.iloc[60:459].copy()
    dup = calib.iloc[[0]].assign(text=calib.iloc[0]["text"].upper())  # a near-exact duplicate
    pd.concat([calib, dup]).to_csv(root / "calib.csv", index=False)
    df.iloc[:200].to_csv(root / "data.csv", index=False)
    three = df.iloc[:60].copy()
    three.loc[three.index[:5], "label"] = "meh"
    three.to_csv(root / "three.csv", index=False)
    return root


def _init(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["init", *args])
    return code, capsys.readouterr().err.strip()


def _one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        (["--model", "{root}/missing", "--data", "{root}/data.csv"], "missing"),
        (["--model", "{root}/encoder", "--data", "{root}/data.csv"], "classification head"),
        (["--model", "{root}/model", "--test", "{root}/three.csv"], "meh"),
        (["--model", "{root}/model", "--data", "{root}/data.csv", "--max-length", "-5"], "-5"),
        (["--model", "{root}/model", "--data", "{root}/data.csv", "--label-column", "y"], "'y'"),
        (["--model", "{root}/model", "--data", "{root}/data.csv", "--text-column", "t"], "'t'"),
        (["--model", "{root}/model", "--data", "{root}/nope.csv"], "nope.csv"),
    ],
    ids=["no-model", "no-head", "3-labels", "max-length", "label-col", "text-col", "no-data"],
)  # fmt: skip
def test_refusals_are_one_line_exit_2_and_write_nothing(user, tmp_path, capsys, case, expect):
    out = tmp_path / "sub" / "exp.toml"
    args = [a.format(root=user) for a in case]
    code, err = _init(capsys, *args, "--out", str(out))
    assert code == 2 and expect in _one_error_line(err)
    assert not out.exists() and not out.parent.exists()  # nothing, not even the folder
    fixed = ["--model", str(user / "model"), "--data", str(user / "data.csv")]
    assert _init(capsys, *fixed, "--out", str(out))[0] == 0  # no --force needed after a refusal
    assert out.is_file()


def test_newline_in_a_column_name_never_injects_a_key(user, tmp_path, capsys):
    out = tmp_path / "exp.toml"
    args = ["--model", str(user / "model"), "--data", str(user / "data.csv")]
    code, err = _init(capsys, *args, "--label-column", 'label"\nseed = 99', "--out", str(out))
    assert code == 2 and "control character" in _one_error_line(err)
    assert list(tmp_path.iterdir()) == []
    code, err = _init(capsys, *args, "--label-column", 'lab"el', "--out", str(out))
    assert code == 2 and 'lab"el' in _one_error_line(err)  # a quote is a (missing) column
    assert list(tmp_path.iterdir()) == []


def test_quote_in_a_legal_file_name_round_trips_through_the_loader(user, tmp_path, capsys):
    from workbench.experiment.spec import load_experiment

    data = tmp_path / 'critic\'s "best" [v2].csv'
    data.write_bytes((user / "data.csv").read_bytes())
    out = tmp_path / "it's here" / "exp.toml"
    args = ["--model", str(user / "model"), "--data", str(data), "--out", str(out)]
    code, err = _init(capsys, *args)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    assert set(doc) == {"name", "seed", "model", "data", "calibration", "evaluate", "gate"}
    assert doc["seed"] == 0 and text.lstrip().startswith("#")  # commented, not injected
    exp = load_experiment(out)
    assert exp.data.file == str(data.resolve()) and exp.model.path == str(user / "model")
    assert exp.name == "model" and exp.data.max_length == 128
    # data.csv splits 60/20/20: the pool is 40 distinct rows, so n is 40, not 512
    assert doc["calibration"]["n"] == exp.calibration.n == 40


def test_existing_file_needs_force(user, tmp_path, capsys):
    out = tmp_path / "exp.toml"
    out.write_text("keep me")
    args = ["--model", str(user / "model"), "--data", str(user / "data.csv"), "--out", str(out)]
    code, err = _init(capsys, *args)
    assert code == 2 and "--force" in _one_error_line(err) and out.read_text() == "keep me"
    assert _init(capsys, *args, "--force")[0] == 0 and "keep me" not in out.read_text()


def test_n_from_the_deduplicated_pool_and_runs_default_n_matches(user, tmp_path, capsys):
    """400 calibration rows with one near-exact duplicate: init writes 399, and a run's
    default N adapts to 399 (not 400) and samples the set without an error."""
    from workbench.experiment.calibrate import _calibration_set
    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    out = tmp_path / "exp.toml"
    args = ["--model", str(user / "model"), "--test", str(user / "test.csv"), "--calibration",
            str(user / "calib.csv"), "--out", str(out)]  # fmt: skip
    assert _init(capsys, *args)[0] == 0
    assert len(pd.read_csv(user / "calib.csv")) == 400
    assert tomllib.loads(out.read_text())["calibration"]["n"] == 399
    raw = out.read_text().replace("n = 399", "n = 512")  # the default N, as a user may leave it
    out.write_text(raw)
    ws = Workspace.open(load_experiment(out))
    assert ws.exp.calibration.n == 399 and any("399 distinct" in w for w in ws.warnings)
    cs = _calibration_set(ws, tmp_path, str(tmp_path / "cs"))  # the run's own stage
    assert len(cs) == 399 and cs.dir == tmp_path / "cs" / "model-stratified-n399-s0"  # [name]
    out.write_text(raw.replace("n = 512", "n = 400"))  # an explicit N too large: one line
    capsys.readouterr()
    code = main(["run", str(out), "--reports", str(tmp_path), "--no-progress"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "n = 400" in line and "399 distinct" in line
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["calibset_report.json", "cs", "exp.toml"]  # no run folder, no lock


def test_quick_run_adapts_its_own_n_to_a_small_pool(user, tmp_path, capsys):
    """--quick lowers n to 64 itself; a 40-row pool then adapts instead of being refused."""
    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    out = tmp_path / "exp.toml"
    args = ["--model", str(user / "model"), "--data", str(user / "data.csv"), "--out", str(out)]
    assert _init(capsys, *args)[0] == 0
    out.write_text(out.read_text().replace("n = 40", "n = 512"))
    ws = Workspace.from_experiment(load_experiment(out), quick=True)
    assert ws.exp.calibration.n == 40


def test_a_tokenizer_of_special_tokens_only_is_named_before_the_run(user, tmp_path, capsys, caplog):
    import shutil

    from tests.evaluate.test_sanity import _special_only_tokenizer

    model = shutil.copytree(user / "model", tmp_path / "model")
    _special_only_tokenizer(model / "tokenizer.json")
    out = tmp_path / "exp.toml"
    code, err = _init(capsys, "--model", str(model), "--data", str(user / "data.csv"), "--out",
                      str(out))  # fmt: skip
    assert code == 0 and out.is_file(), err
    assert any("0 non-special tokens" in r.getMessage() for r in caplog.records)
