"""Every TensorRT name the backend uses exists in the real bindings (runs on every machine).

Polygraphy makes most TensorRT calls; the ones the workbench makes itself (the engine
inspector for the INT8 audit, the strongly-typed flag, the implicit calibrator's base class)
are checked here. The implicit-INT8 path (feeding.py) must exist in TensorRT 10.x; everything
else in both 10.x and 11.x. Attribute names that are neither TensorRT's, Polygraphy's nor the
workbench's must be on the short reviewed allowlist below, so a TensorRT method typo or an
8.x-era call cannot hide among "other" names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends.tensorrt.trt_names import (
    load_names,
    names_defined_in,
    present,
    scan_files,
    scan_source,
)

ROOT = Path(__file__).resolve().parents[3]
PKG = ROOT / "workbench" / "backends" / "tensorrt"
IMPLICIT = [PKG / "feeding.py"]  # IInt8EntropyCalibrator2: TensorRT 10.x only
BOTH = sorted(p for p in PKG.glob("*.py") if p not in IMPLICIT)
# Attribute names in those modules that belong to the stdlib, NumPy, ONNX or the CUDA runtime
# (reviewed by hand); Polygraphy's names are checked against its installed source instead.
NON_TRT = {
    "JSONDecodeError", "loads", "getLogger", "contextmanager", "most_common", "popleft",  # stdlib
    "is_file", "parent", "read_bytes", "read_text", "write_bytes", "write_text", "unlink",
    "with_name", "byref", "c_int",  # pathlib / ctypes
    "cudaDeviceGetAttribute",  # CUDA runtime API, called through Polygraphy's libcudart handle
    "ndarray", "asarray", "ascontiguousarray", "full", "hexdigest",  # numpy / hashlib
    "checker", "check_model", "graph", "elem_type", "tensor_type",  # onnx
}  # fmt: skip
VERSIONS = load_names()


def polygraphy_names() -> set[str]:
    """Every name the installed Polygraphy defines (its API, as the code we call reaches it)."""
    import warnings

    import polygraphy

    with warnings.catch_warnings():  # its sources hold a few invalid escape sequences
        warnings.simplefilter("ignore")
        return names_defined_in(Path(polygraphy.__file__).parent)


def test_name_lists_are_the_real_bindings() -> None:
    assert set(VERSIONS) == {"10.16.1", "11.4.0"}
    v10, v11 = VERSIONS["10.16.1"], VERSIONS["11.4.0"]
    assert {"execute_async_v3", "set_tensor_address", "IInt8EntropyCalibrator2"} <= v10
    assert "IInt8EntropyCalibrator2" not in v11 and "int8_calibrator" not in v11


def test_trt_names_outside_the_implicit_path_exist_in_10_and_11() -> None:
    trt_names, _ = scan_files(BOTH)
    assert trt_names, "the scan found no trt.* names; did the modules move?"
    for version, names in VERSIONS.items():
        missing = sorted(n for n in trt_names if not present(n, names))
        assert not missing, f"TensorRT {version} bindings lack trt.{missing}"


def test_other_attribute_names_are_trt_polygraphy_own_or_reviewed() -> None:
    trt_names, other = scan_files(BOTH + IMPLICIT)
    own = names_defined_in(ROOT / "workbench") | polygraphy_names()
    for version, names in VERSIONS.items():
        unknown = sorted(
            n for n in other - trt_names if not present(n, names) and n not in own | NON_TRT
        )
        assert not unknown, f"not in TensorRT {version} bindings nor the workbench: {unknown}"


def test_implicit_path_names_exist_in_10() -> None:
    trt_names, _ = scan_files(IMPLICIT)
    assert trt_names == {"IInt8EntropyCalibrator2"}
    assert present("IInt8EntropyCalibrator2", VERSIONS["10.16.1"])


def test_implicit_only_names_stay_out_of_the_shared_modules() -> None:
    sources = "\n".join(p.read_text() for p in BOTH)
    for name in ("IInt8EntropyCalibrator2", "int8_calibrator", "set_calibration_profile"):
        assert f".{name}" not in sources, f"{name} (gone in TensorRT 11) used outside feeding.py"


def test_the_check_catches_tensorrt_8_calls() -> None:
    old = (
        "def f(trt, builder, network, context, config):\n"
        "    config.max_workspace_size = 1 << 30\n"
        "    engine = builder.build_engine(network, config)\n"
        "    context.execute_async_v2(bindings=[], stream_handle=0)\n"
        "    return trt.volume\n"
    )
    trt_names, other = scan_source(old)
    for version, names in VERSIONS.items():
        flagged = {n for n in trt_names | other if not present(n, names)}
        assert {"max_workspace_size", "execute_async_v2", "volume"} <= flagged, version


def test_shared_checker_agrees() -> None:
    found = [p / "shared/trt-api/check_names.py" for p in (ROOT.parent, ROOT.parent.parent)]
    script = next((p for p in found if p.is_file()), found[0])
    if not script.is_file():
        pytest.skip("shared/trt-api/check_names.py not beside this checkout")
    files = [str(p) for p in BOTH + IMPLICIT]
    res = subprocess.run([sys.executable, str(script), *files], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    both = subprocess.run(
        [sys.executable, str(script), *map(str, BOTH)], capture_output=True, text=True
    )
    assert "trt.* names missing: none" in both.stdout
    assert "11.4.0: trt.* names missing: none" in both.stdout
