"""``workbench doctor`` on this machine (CPU-only here; whatever is present elsewhere)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.cli import main
from workbench.commands.doctor import format_table
from workbench.experiment.doctor import collect


def test_doctor_json_reports_every_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["component"]: c for c in report["checks"]}
    assert set(checks) == {"tensorrt", "nvidia-smi", "polygraphy", "torch", "onnxruntime"}
    ort_check = checks["onnxruntime"]
    assert ort_check["ok"] and "CPUExecutionProvider" in ort_check["detail"]
    assert report["backends"]["onnxruntime-cpu"] is True
    trt = checks["tensorrt"]
    if not trt["ok"]:
        assert trt["detail"].startswith("TensorRT is not installed: its libraries come only")
        assert "--extra-index-url https://pypi.nvidia.com" in trt["detail"]
        assert report["backends"]["tensorrt"] is False
    else:
        assert trt["version"][:2] in {"10", "11"}


def test_doctor_table_names_usable_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["component", "ok", "version"]
    assert "usable backends:" in out and "onnxruntime-cpu" in out


def test_doctor_runs_as_a_console_command() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "workbench", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a busy machine is slow, not stuck
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["backends"]["onnxruntime-cpu"] is True


def test_format_table_is_aligned() -> None:
    text = format_table(collect())
    header, rule = text.splitlines()[:2]
    assert header.index("ok") == rule.index(
        "-", rule.index(" ")
    )  # column 2 starts where its rule does
