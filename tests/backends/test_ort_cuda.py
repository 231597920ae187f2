"""ONNX Runtime on CUDA, the CPU side: the FP16 build, the registry, the unavailable reason,
and the script that carries the onnxruntime-gpu wheel to the GPU machine in parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks.ort_gpu_parts import PartsError, join, split
from tests.calibration.conftest import random_texts
from workbench.backends.registry import BuildRequest, get_backend
from workbench.errors import BackendUnavailableError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ort_gpu_parts.py"


def request(fp32_onnx: Path, cache: Path, precision: str, device: str = "cuda") -> BuildRequest:
    """A build request for ``precision`` of the tiny model (ORT's own calibrator for INT8)."""
    return BuildRequest(
        name=f"ort-{device}-{precision}",
        backend="onnxruntime",
        device=device,
        precision=precision,
        compile=False,
        cuda_graphs=False,
        fp32_onnx=str(fp32_onnx),
        torch_model="",
        tokenizer_file="",
        max_length=64,
        table_file="",
        method="max",
        calibrator="ort",
        per_channel=True,
        exclude=(),
        cache_dir=str(cache),
    )


@pytest.fixture(scope="module")
def feeds(tiny_model):
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    return [tok.encode(random_texts(16, seed=70 + s)) for s in range(3)]  # padded batches


@pytest.fixture(scope="module")
def fp16(tiny_onnx, tmp_path_factory):
    from workbench.backends.onnxruntime.fp16 import build_fp16

    return build_fp16(tiny_onnx, tmp_path_factory.mktemp("ort-fp16"))


def _logits(path: Path, feeds) -> np.ndarray:
    from workbench.backends.onnxruntime.runner import OrtRunner

    with OrtRunner(path) as r:
        return np.concatenate([r.infer(f)["logits"] for f in feeds])


def test_fp16_build_is_valid_fp16_with_float32_io(fp16, tiny_onnx) -> None:
    onnx.checker.check_model(str(fp16.path))
    model = onnx.load(str(fp16.path))
    dtypes = {i.data_type for i in model.graph.initializer}
    src = onnx.load(str(tiny_onnx))
    n_float = sum(i.data_type == onnx.TensorProto.FLOAT for i in src.graph.initializer)
    assert onnx.TensorProto.FLOAT not in dtypes, "a float32 weight survived the conversion"
    assert fp16.fp16_initializers == n_float > 0
    out = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert out == {"logits": onnx.TensorProto.FLOAT}
    ins = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert set(ins.values()) == {onnx.TensorProto.INT64}
    assert fp16.fused_ops.get("SkipLayerNormalization", 0) >= 2  # ORT's fusions ran
    assert "FP16" in fp16.detail and "keep_io_types" in fp16.detail


def test_fp16_logits_on_cpu_are_close_to_fp32(fp16, tiny_onnx, feeds) -> None:
    """ORT's CPU provider runs every op of the FP16 graph (no GPU needed for accuracy)."""
    ref, got = _logits(tiny_onnx, feeds), _logits(fp16.path, feeds)
    assert got.dtype == np.float32 and got.shape == ref.shape
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert 0 < rel < 5e-3, rel  # FP16 rounding is there, but small
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_fp16_build_is_cached_and_rebuilt_when_damaged(tiny_onnx, tmp_path) -> None:
    from workbench.backends.onnxruntime.fp16 import build_fp16

    first = build_fp16(tiny_onnx, tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = build_fp16(tiny_onnx, tmp_path)
    assert again == first and again.path.stat().st_mtime_ns == stamp
    first.path.write_bytes(first.path.read_bytes()[:1000])  # truncated by a crash
    fixed = build_fp16(tiny_onnx, tmp_path)
    onnx.checker.check_model(str(fixed.path))
    assert fixed.fp16_initializers == first.fp16_initializers


def test_registry_builds_fp16_on_cuda_only(tiny_onnx, tmp_path) -> None:
    from workbench.fileio import sha256_file

    backend = get_backend("onnxruntime")
    assert {"fp32", "fp16", "int8-static"} <= set(backend.capabilities.builds("cuda"))
    assert "fp16" not in backend.capabilities.builds("cpu")
    art = backend.build(request(tiny_onnx, tmp_path, "fp16"), None)
    assert art.model_path.startswith(str(tmp_path / "ort-fp16"))
    assert art.model_sha256 == sha256_file(art.model_path) != sha256_file(tiny_onnx)
    assert "FP16" in art.detail


def test_int8_static_on_cuda_says_what_cuda_runs(tiny_onnx, tmp_path, feeds) -> None:
    backend = get_backend("onnxruntime")
    cpu = backend.build(request(tiny_onnx, tmp_path, "int8-static", "cpu"), lambda: feeds)
    gpu = backend.build(request(tiny_onnx, tmp_path, "int8-static", "cuda"), lambda: feeds)
    assert gpu.model_path == cpu.model_path  # the same Q/DQ model
    assert "CUDA EP" not in cpu.detail
    assert gpu.detail.startswith(cpu.detail) and "float MatMuls" in gpu.detail


def test_cuda_unavailable_reason_is_one_line_here() -> None:
    import onnxruntime as ort

    from workbench.backends.onnxruntime.cuda import (
        make_ort_cuda_runner,
        ort_cuda_unavailable_reason,
    )

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (the gpu tests cover it)")
    why = ort_cuda_unavailable_reason()
    assert why and "\n" not in why and "onnxruntime-gpu" in why
    assert get_backend("onnxruntime").unavailable_reason("cuda") == why
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu") as err:
        make_ort_cuda_runner("does-not-matter.onnx")
    assert "\n" not in str(err.value)


def test_cuda_unavailable_reason_without_torch(monkeypatch) -> None:
    from workbench.backends.onnxruntime.cuda import ort_cuda_unavailable_reason

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    why = ort_cuda_unavailable_reason()
    assert why is None or ("\n" not in why and "torch" not in why)


# --- carrying the wheel in parts ---------------------------------------------------------


@pytest.fixture
def blob(tmp_path) -> Path:
    path = tmp_path / "pkg.whl"
    path.write_bytes(np.random.default_rng(3).bytes(50_000))
    return path


def _run(*args: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_split_then_join_from_several_folders(blob, tmp_path) -> None:
    m = split(blob, tmp_path / "a", part_mb=16_384 / (1 << 20))  # 16 KiB parts
    assert [p["name"] for p in m["parts"]] == ["p0", "p1", "p2", "p3"]
    assert [p["size"] for p in m["parts"]] == [16_384] * 3 + [50_000 - 3 * 16_384]
    (tmp_path / "b").mkdir()
    for name in ("p1", "p3"):  # as if carried by different calls into different folders
        (tmp_path / "a" / name).rename(tmp_path / "b" / name)
    done = _run("join", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out" / "x.whl")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "x.whl").read_bytes() == blob.read_bytes()


def test_join_names_the_missing_part(blob, tmp_path) -> None:
    split(blob, tmp_path / "a", part_mb=0.01)
    (tmp_path / "a" / "p2").unlink()
    done = _run("join", tmp_path / "a", "--out", tmp_path / "x.whl")
    assert done.returncode == 2 and "['p2']" in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "x.whl").exists()


def test_join_names_the_corrupt_part_and_uses_a_good_copy(blob, tmp_path) -> None:
    split(blob, tmp_path / "a", part_mb=0.01)
    good = (tmp_path / "a" / "p1").read_bytes()
    (tmp_path / "a" / "p1").write_bytes(b"\0" + good[1:])  # same size, one byte flipped
    with pytest.raises(PartsError, match="part p1 is corrupt"):
        join([tmp_path / "a"], tmp_path / "x.whl")
    done = _run("join", tmp_path / "a", "--out", tmp_path / "x.whl")
    assert done.returncode == 2 and "p1" in done.stderr and done.stderr.count("\n") == 1
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "p1").write_bytes(good)  # a second, intact copy elsewhere
    (tmp_path / "out").mkdir()
    done = join([tmp_path / "a", tmp_path / "b"], tmp_path / "out")  # a folder: original name
    assert done["out"] == str(tmp_path / "out" / "pkg.whl")
    assert (tmp_path / "out" / "pkg.whl").read_bytes() == blob.read_bytes()


def test_split_replaces_stale_parts(blob, tmp_path) -> None:
    split(blob, tmp_path / "a", part_mb=0.005)  # many small parts
    m = split(blob, tmp_path / "a", part_mb=0.04)
    assert sorted(p.name for p in (tmp_path / "a").glob("p*")) == [p["name"] for p in m["parts"]]
    done = _run("split", tmp_path / "nope.whl", tmp_path / "c")
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_preload_points_a_target_install_at_the_nvidia_packages(tmp_path) -> None:
    from workbench.backends.onnxruntime.cuda import preload_calls, preload_cuda_libraries

    ort_site, image = tmp_path / "ortsite", tmp_path / "site-packages"
    for sub in ("cu13/lib", "cudnn/lib"):
        (image / "nvidia" / sub).mkdir(parents=True)
    roots = [image / "nvidia"]
    assert preload_calls("13.0", ort_site, roots) == [
        {"cuda": True, "cudnn": False, "directory": str(image / "nvidia/cu13/lib")},
        {"cuda": False, "cudnn": True, "directory": str(image / "nvidia/cudnn/lib")},
    ]
    assert preload_calls("13.0", image, roots) == [{}]  # ORT beside them: its own search
    assert preload_calls("12.8", ort_site, roots) == [{}]  # CUDA 12: per-package layout
    assert preload_calls("", ort_site, roots) == [{}]  # a CPU build
    assert preload_cuda_libraries() == []  # this CPU onnxruntime has nothing to load
