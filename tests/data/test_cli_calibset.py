"""``workbench calibset`` end to end on the shipped data and real files."""

from __future__ import annotations

import json

import pandas as pd

from workbench.cli import main
from workbench.results.representativeness import load_report


def test_build_with_test_target_writes_set_and_report(tmp_path, capsys):
    rc = main(
        [
            "calibset",
            "--root",
            str(tmp_path / "sets"),
            "--n",
            "128",
            "--target",
            "test",
            "--report-dir",
            str(tmp_path / "run"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "rotten_tomatoes-stratified-n128-s0" in out and "REPRESENTATIVE" in out
    manifest = json.loads(
        (tmp_path / "sets" / "rotten_tomatoes-stratified-n128-s0" / "manifest.json").read_text()
    )
    assert manifest["representativeness"]["verdict"] == "representative"
    assert load_report(tmp_path / "run").manifest_sha256


def test_biased_set_warns_and_fail_on(tmp_path, capsys):
    traffic = tmp_path / "traffic.txt"
    from workbench.data.datasets import load_rotten_tomatoes

    texts = load_rotten_tomatoes().dataset["text"][:400]
    traffic.write_text("\n".join(texts), encoding="utf-8")
    args = ["calibset", "--root", str(tmp_path), "--n", "64", "--max-tokens", "12"]
    rc = main([*args, "--target", str(traffic)])
    captured = capsys.readouterr()
    assert rc == 0 and "NOT REPRESENTATIVE" in captured.out
    assert "warning: token-length PSI" in captured.err
    assert main([*args, "--target", str(traffic), "--fail-on", "drifting"]) == 1


def test_unlabelled_file_defaults_to_length_strategy(tmp_path, capsys):
    from workbench.data.datasets import load_rotten_tomatoes

    texts = load_rotten_tomatoes().dataset["text"][:300]
    path = tmp_path / "prod.jsonl"
    pd.DataFrame({"body": texts}).to_json(path, orient="records", lines=True)
    rc = main(
        [
            "calibset",
            "--data",
            str(path),
            "--text-column",
            "body",
            "--root",
            str(tmp_path),
            "--n",
            "40",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "prod-length-n40-s0" in out and "unlabelled" in out


def test_bad_input_exit_code_2(tmp_path, capsys):
    assert main(["calibset", "--root", str(tmp_path), "--n", "100000"]) == 2
    assert "only 2551 examples are available" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["calibset", "--root", str(tmp_path), "--n", "8", "--target", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["calibset", "--root", str(tmp_path), "--n", "8", "--strategy", "matched"]) == 2
    assert "needs a target" in capsys.readouterr().err
