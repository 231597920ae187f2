"""The CLI works without heavy imports and turns bad input into one line + exit code 2."""

from __future__ import annotations

import subprocess
import sys

from workbench.cli import main


def test_help_lists_commands_without_torch():
    code = (
        "import sys; from workbench.cli import build_parser; build_parser().format_help(); "
        "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out


def test_missing_column_is_one_line_exit_2(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("review,label\ngood,1\nbad,0\n")
    code = main(
        [
            "demo",
            "--quick",
            "--data",
            str(data),
            "--reports",
            str(tmp_path / "r"),
            "--calibration-sets",
            str(tmp_path / "c"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and "--text-column" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_single_class_dataset_is_refused(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n')
    code = main(
        ["demo", "--quick", "--data", str(data), "--reports", str(tmp_path / "r"), "--no-progress"]
    )
    assert code == 2
    assert "single class" in capsys.readouterr().err
