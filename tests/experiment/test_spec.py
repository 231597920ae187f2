"""Experiment files: field-level errors, did-you-mean, relative paths, defaults, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.experiment.spec import load_experiment, shipped_experiment
from workbench.results.serde import from_dict, to_dict
from workbench.results.spec import Experiment


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sub" / "exp.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_demo_loads_with_defaults() -> None:
    exp = load_experiment(shipped_experiment("demo"))
    assert exp.model.default and exp.data.shipped
    assert exp.calibration.n == 512 and exp.calibration.method == "max"
    # the four CPU builds an experiment without [[build]] tables gets, then the gated one:
    # the search's choice on this classifier (docs/search.md)
    names = [b.name for b in exp.builds]
    assert names == ["torch-fp32", "ort-fp32", "ort-int8-static", "ort-int8-dynamic",
                     "ort-int8-searched"]  # fmt: skip
    gated = exp.builds[-1]
    assert exp.gate.candidates == ("ort-int8-searched",) and gated.graph == "fused"
    assert gated.recovery == ("smoothquant-0.8", "per-token-ffn-down-worst-2")
    assert exp.gate.policy is not None and exp.gate.policy.max_accuracy_drop == 0.01


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, '[model]\npath = "../m"\n[data]\ntest = "val.csv"\n')
    exp = load_experiment(p)
    assert exp.model.path == str((tmp_path / "m").resolve())
    assert exp.data.test == str((tmp_path / "sub" / "val.csv").resolve())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[calibraton]\nn = 3\n", "unknown key 'calibraton'; did you mean 'calibration'?"),
        ("[model]\ndefault = true\n[calibration]\nmethdo = 'max'\n", "did you mean 'method'?"),
        ("[model]\ndefault = true\n[calibration]\nn = '512'\n", "n = '512' must be a whole"),
        ("[model]\ndefault = true\n[[build]]\nbackend = 'onnxrt'\n", "did you mean 'onnxruntime'"),
        ("[model]\ndefault = true\n[[build]]\nprecision = 'fp16'\n", "needs backend"),
        ("[model]\npath = 'm.onnx'\n[data]\ntest = 'v.csv'\n", "needs [model] tokenizer"),
        ("[model]\npath = 'm'\n", "your model needs your data"),
        ("[model]\ndefault = true\n[evaluate]\nshapes = [[1, 4096]]\n", "8 <= seq <= max_length"),
        ("[model]\ndefault = true\n[calibration]\nmethod = 'kl'\n", "kl"),
        ("[model]\ndefault = true\n[gate.policy]\nmax_acuracy_drop = 0.01\n", "did you mean"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_experiment(_write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_builds_get_default_names_and_must_be_unique(tmp_path: Path) -> None:
    text = (
        "[model]\ndefault = true\n"
        "[[build]]\nbackend = 'pytorch'\ndevice = 'cuda'\nprecision = 'fp16'\ncuda_graphs = true\n"
        "[[build]]\nbackend = 'onnxruntime'\nprecision = 'int8-static'\n"
    )
    exp = load_experiment(_write(tmp_path, text))
    assert [b.name for b in exp.builds] == ["torch-cuda-fp16-graphs", "ort-int8-static"]
    dup = text + "[[build]]\nbackend = 'onnxruntime'\nprecision = 'int8-static'\n"
    with pytest.raises(ConfigError, match="repeated: ort-int8-static"):
        load_experiment(_write(tmp_path, dup))


def test_inline_policy_and_round_trip(tmp_path: Path) -> None:
    text = (
        "[model]\ndefault = true\n[gate]\ncandidates = ['ort-int8-dynamic']\n"
        "[gate.policy]\nmax_accuracy_drop = 0.02\nmin_samples = 50\n"
    )
    exp = load_experiment(_write(tmp_path, text))
    assert exp.gate.policy is not None and exp.gate.policy.max_accuracy_drop == 0.02
    again = from_dict(Experiment, to_dict(exp))
    assert again == exp


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workbench init"):
        load_experiment(tmp_path / "nope.toml")
