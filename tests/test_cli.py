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


def _experiment(tmp_path, data) -> str:
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[model]\ndefault = true\n[data]\nfile = "{data.name}"\n')
    return str(exp)


def test_missing_column_is_one_line_exit_2(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("review,label\ngood,1\nbad,0\n")
    args = ["--quick", "--reports", str(tmp_path / "r"), "--calibration-sets", str(tmp_path / "c")]
    code = main(["run", _experiment(tmp_path, data), *args, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and "text_column" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_single_class_dataset_is_refused(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n')
    code = main(["run", _experiment(tmp_path, data), "--reports", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "single class ('1')" in err


def test_run_demo_and_search_options_all_have_help():
    """`workbench run/demo/search --help` explains every option (--no-progress and
    --calibration-sets included; run and demo also --keep-models)."""
    import argparse

    from workbench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("run", "demo", "search"):
        opts = [a for a in sub.choices[name]._actions if a.option_strings]
        assert {"--no-progress", "--calibration-sets"} <= {
            s for a in opts for s in a.option_strings
        }
        assert [a.option_strings for a in opts if not a.help] == []
        assert (name == "search") or any("--keep-models" in a.option_strings for a in opts)
