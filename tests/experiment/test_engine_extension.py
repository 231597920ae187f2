"""The extension points, proved: a toy precision and a toy backend, registered in this test
alone (no file of the package edited), run through the ordinary engine to a run record.

The toy backend ("copy") builds the toy precision "fp32-copy": the verified FP32 ONNX
model copied into its own cache entry and run by ONNX Runtime. Same model, so its
predictions must equal ort-fp32's sample for sample (the oracle), and its artifact must
be a byte copy of the export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.backends.base import Runner
from workbench.backends.registry import (
    Artifact,
    BuildRequest,
    CalibrationFeeds,
    Capabilities,
    register_backend,
    unregister_backend,
)
from workbench.errors import ConfigError
from workbench.fileio import sha256_file
from workbench.results.precision import Precision, register_precision, unregister_precision
from workbench.results.records import Int8Coverage

pytest.importorskip("torch", reason="the tiny HF model needs torch (extra: torch)")
pytestmark = pytest.mark.filterwarnings("ignore")

FP32_COPY = Precision("fp32-copy", "fp32", summary="FP32, a byte copy of the export (toy)")


class CopyBackend:
    """A toy backend: copies the FP32 ONNX model and runs it in ONNX Runtime."""

    name = "copy"
    # registered in this process only, so its latency is timed here, not in a child process
    capabilities = Capabilities(
        short_name="copy", precisions={"cpu": ("fp32-copy",)}, isolated_timing=False
    )

    def unavailable_reason(self, device: str) -> str | None:
        return None

    def build(self, req: BuildRequest, calibration: CalibrationFeeds | None) -> Artifact:
        sha = sha256_file(req.fp32_onnx)
        out = Path(req.cache_dir) / "copy" / sha[:16] / "model.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(req.fp32_onnx, out)
        return Artifact(str(out), sha256_file(out), "FP32 ONNX, copied by the toy backend")

    def open_runner(self, req: BuildRequest, artifact: Artifact, threads: int = 0) -> Runner:
        from workbench.backends.onnxruntime.runner import OrtRunner

        return OrtRunner(
            artifact.model_path, name=req.name, precision=req.precision, intra_op_threads=threads
        )

    def int8_audit(self, req: BuildRequest, artifact: Artifact) -> Int8Coverage | None:
        return None


@pytest.fixture
def toy():
    """The toy precision and backend, registered for one test and forgotten after it."""
    register_precision(FP32_COPY)
    register_backend(CopyBackend())
    yield
    unregister_backend("copy")
    unregister_precision("fp32-copy")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_bert import make_tiny_hf_classifier

    root = tmp_path_factory.mktemp("toy")
    make_tiny_hf_classifier(root / "model", ["neg", "pos"], seed=0)
    texts = [f"review number {i} says the film was {'good' if i % 2 else 'bad'}" for i in range(40)]
    labels = ["pos" if i % 2 else "neg" for i in range(40)]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "val.csv", index=False)
    (root / "e.toml").write_text(
        '[model]\npath = "model"\n[data]\ntest = "val.csv"\nmax_length = 32\n'
        "[evaluate]\nshapes = [[1, 16]]\niterations = 3\nwarmup = 1\n"
        "[calibration]\ncompare = []\n[gate]\nenabled = false\n"
        '[[build]]\nbackend = "onnxruntime"\n'
        '[[build]]\nbackend = "copy"\nprecision = "fp32-copy"\n',
        encoding="utf-8",
    )
    return root


def test_a_registered_precision_and_backend_run_through_the_engine(toy, folder, tmp_path):
    from workbench.experiment.engine import RunOptions, run_experiment
    from workbench.experiment.spec import load_experiment
    from workbench.results.records import load_run

    exp = load_experiment(folder / "e.toml")
    assert [b.name for b in exp.builds] == ["ort-fp32", "copy-fp32-copy"]  # default names
    opts = RunOptions(
        reports_root=str(tmp_path / "reports"),
        calibration_root=str(tmp_path / "sets"),
        run_id="toy",
        progress=False,
    )
    _, run_dir = run_experiment(exp, opts)

    run = load_run(run_dir)  # the record as saved, read back
    assert run.reference_build == "ort-fp32"  # the first FP32 build
    assert run.calibration is None  # neither precision is calibrated
    toy = run.build("copy-fp32-copy")
    assert (toy.backend, toy.precision, toy.device) == ("copy", "fp32-copy", "cpu")
    assert toy.notes == ["FP32 ONNX, copied by the toy backend"]
    assert toy.model_sha256 == sha256_file(run.model.onnx_path)  # a byte copy of the export
    assert toy.model_path != run.model.onnx_path
    assert toy.int8_coverage is None
    assert toy.latency and toy.latency[0].timer == "perf_counter_ns"
    assert (toy.latency[0].batch_size, toy.latency[0].seq_len) == (1, 16)
    assert toy.accuracy is not None and toy.accuracy.n == 30  # a quarter held out to calibrate
    assert toy.accuracy.agreement == 1.0  # same model as the reference
    ref = run.build("ort-fp32")
    mine, theirs = (pd.read_parquet(run_dir / b.accuracy.predictions_file) for b in (toy, ref))
    np.testing.assert_array_equal(mine["pred"], theirs["pred"])
    logits = [np.stack(df["logits"].to_numpy()) for df in (mine, theirs)]
    np.testing.assert_allclose(*logits, rtol=0, atol=1e-5)
    assert "copy-fp32-copy" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_unregistered_names_are_refused_with_the_registered_ones_listed(toy, folder):
    from workbench.backends.registry import backend_names, check_supported
    from workbench.experiment.spec import load_experiment
    from workbench.results.precision import precision_names

    assert "copy" in backend_names() and "fp32-copy" in precision_names()
    with pytest.raises(ConfigError, match="copy on cpu builds fp32-copy; precision 'fp32'"):
        check_supported("copy", "cpu", "fp32")
    unregister_backend("copy")
    with pytest.raises(ConfigError, match=r"backend = 'copy' is unknown.*onnxruntime"):
        load_experiment(folder / "e.toml")
    register_backend(CopyBackend())
    unregister_precision("fp32-copy")
    with pytest.raises(ConfigError, match="precision = 'fp32-copy' is unknown; did you mean"):
        load_experiment(folder / "e.toml")


def test_a_backend_listing_an_unregistered_precision_is_refused():
    with pytest.raises(ConfigError, match=r"unregistered precision.*fp32-copy.*register_precision"):
        register_backend(CopyBackend())
    with pytest.raises(ConfigError, match="ships with the workbench"):
        register_backend(type("Ort", (CopyBackend,), {"name": "onnxruntime"})())
