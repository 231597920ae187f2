"""Triton kernels against NumPy float64 oracles: on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``), and compiled on a GPU (the ``cuda`` cases, marked ``gpu``).

The interpreter is chosen once per session (``triton.jit`` reads ``TRITON_INTERPRET`` as it
decorates, and triton's lazily imported parts read it again later, so it stays set for the rest
of the session): without a CUDA GPU, or with the variable already set, every case runs on the
CPU; on a GPU the same cases run compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import erf

from workbench.backends.pytorch.kernels import QuantSpec, triton_missing_reason
from workbench.calibration.fp8 import e4m3_grid, round_to_e4m3
from workbench.errors import BackendUnavailableError, ConfigError, InputMismatchError

MISSING = triton_missing_reason()
needs_triton = pytest.mark.skipif(MISSING is not None, reason=f"Triton kernels: {MISSING}")
if MISSING is None:
    import torch

    COMPILED = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"
    if not COMPILED:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernel modules are imported
else:
    COMPILED = False
DEVICES = [
    pytest.param("cpu", id="interpreter"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="module")
def K():
    """The kernels, imported under the interpreter unless compiled for CUDA."""
    from workbench.backends.pytorch import kernels

    return kernels


@pytest.fixture(params=DEVICES)
def dev(request) -> str:
    if MISSING is not None:
        pytest.skip(f"Triton kernels: {MISSING}")
    if request.param == "cuda" and not COMPILED:
        pytest.skip("no CUDA GPU here (or TRITON_INTERPRET=1): the interpreter cases ran instead")
    if request.param == "cpu" and COMPILED:
        pytest.skip("kernels are compiled for the GPU in this session; TRITON_INTERPRET=1 for CPU")
    return request.param


# ------------------------------------------------------------------------------ oracles
def np_quant(v: np.ndarray, fmt: str, qmin: float = -128.0) -> np.ndarray:
    """Exact codes of ``v = y / scale``: INT8 round half even + saturate, or the e4m3 grid."""
    if fmt == "int8":
        return np.clip(np.round(v), qmin, 127.0)
    return round_to_e4m3(np.clip(v, -448.0, 448.0))


def assert_codes(q, y64: np.ndarray, scale: float, fmt: str, qmin: float = -128.0) -> None:
    """Kernel codes equal the float64 oracle's, but for float32 noise at a rounding boundary.

    Rounding is monotone, so a kernel computing ``y`` in float32 may only land between the
    codes of ``y / scale`` nudged down and up by float32 noise.
    """
    got = q.cpu().to(torch.float64).numpy()
    v = y64 / scale
    tol = 4e-6 * np.abs(v) + 1e-6
    lo, hi = np_quant(v - tol, fmt, qmin), np_quant(v + tol, fmt, qmin)
    bad = (got < lo) | (got > hi)
    assert not bad.any(), f"{bad.sum()} codes off, e.g. got {got[bad][:3]} want {lo[bad][:3]}"
    assert (got == np_quant(v, fmt, qmin)).mean() > 0.95  # boundaries are rare


def t(a: np.ndarray, dev: str, dtype=None):
    return torch.tensor(a, dtype=dtype or torch.float32, device=dev)


def np_ln(h: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = h.mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def np_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


# ---------------------------------------------------------------- quantize: ties, limits
TIES = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.25, -3.75, 126.5, 127.5, -127.5, -128.5, 1e4, -1e4]


@pytest.mark.parametrize("symmetric", [False, True], ids=["int8", "int8-symmetric"])
def test_quantize_int8_rounds_ties_to_even_and_saturates(K, dev, symmetric):
    x = np.array(TIES) * 0.25  # divided by the scale 0.25: the exact tie values
    q = K.quantize(t(x, dev), QuantSpec("int8", 0.25, symmetric=symmetric))
    qmin = -127.0 if symmetric else -128.0
    want = np.clip(np.round(np.array(TIES)), qmin, 127)
    assert q.dtype == torch.int8
    np.testing.assert_array_equal(q.cpu().numpy(), want)
    assert want[2] == 2 and want[10] == -128 + symmetric  # 2.5 -> 2; -127.5 -> -128 / -127
    if not symmetric:  # bit-identical to the PyTorch path the kernels replace
        from workbench.backends.pytorch.lowp import quantize_int8

        np.testing.assert_array_equal(q.cpu(), quantize_int8(t(x, dev), 0.25).cpu())


def test_quantize_fp8_lands_on_the_e4m3_grid_with_ties_to_even(K, dev):
    g = e4m3_grid()
    mids = (g[1:] + g[:-1]) / 2  # every tie between neighbours, subnormals included
    v = np.concatenate([g, mids, -g, -mids, [449.0, 500.0, 1e6, -1e6, 1e-5, -1e-5]])
    q = K.quantize(t(v * 2.0, dev), QuantSpec("fp8", 2.0))
    assert q.dtype == torch.float8_e4m3fn
    got = q.cpu().to(torch.float64).numpy()
    np.testing.assert_array_equal(got, np_quant(v, "fp8"))
    assert np.abs(got).max() == 448.0  # saturates, never inf/NaN
    np.testing.assert_array_equal(got, t(v, "cpu").clamp(-448, 448).to(q.dtype).double().numpy())


def test_quantize_odd_shape_over_many_programs(K, dev):
    x = np.random.default_rng(0).normal(0, 2, (3, 7, 41))
    for fmt in ("int8", "fp8"):
        q = K.quantize(t(x, dev), QuantSpec(fmt, 0.037), block=64)  # 14 programs, last partial
        assert q.shape == x.shape
        assert_codes(q, x.astype(np.float32).astype(np.float64), 0.037, fmt)


def test_quantize_divides_exactly_like_numpy_float32(K, dev):
    # near-ties k.5 * s with an inexact scale: x * (1 / s) would round some of them the other way
    s = np.float32(0.037)
    x = ((np.arange(-300, 300) + 0.5) * s).astype(np.float32)
    v = x / s  # IEEE float32 division, as torch does it
    for fmt in ("int8", "fp8"):
        q = K.quantize(t(x, dev), QuantSpec(fmt, float(s)))
        want = np_quant(v.astype(np.float64), fmt)
        np.testing.assert_array_equal(q.cpu().to(torch.float64).numpy(), want)


def test_scale_may_be_a_device_tensor(K, dev):
    x = t(np.linspace(-3, 3, 50), dev)
    a = K.quantize(x, QuantSpec("int8", torch.tensor(0.05, device=dev)))
    np.testing.assert_array_equal(a.cpu(), K.quantize(x, QuantSpec("int8", 0.05)).cpu())


# --------------------------------------------------------------------- LayerNorm → quant
@pytest.mark.parametrize("fmt", ["int8", "fp8"])
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "plain"])
def test_layernorm_quant_matches_float64_oracle(K, dev, fmt, residual):
    rng = np.random.default_rng(1)
    x, r = rng.normal(0, 1, (2, 5, 37)), rng.normal(0, 1, (2, 5, 37))  # 37: a masked block
    g, b = rng.normal(1, 0.2, 37), rng.normal(0, 0.1, 37)
    scale = 4.0 / (127 if fmt == "int8" else 448)
    q, y = K.layernorm_quant(
        t(x, dev), t(g, dev), t(b, dev), QuantSpec(fmt, scale),
        residual=t(r, dev) if residual else None, eps=1e-5,
    )  # fmt: skip
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    want = np_ln(f32(x) + (f32(r) if residual else 0), f32(g), f32(b), 1e-5)
    np.testing.assert_allclose(y.cpu().numpy(), want, rtol=1e-5, atol=1e-5)
    assert_codes(q, want, scale, fmt)


@pytest.mark.parametrize("symmetric", [False, True])
def test_layernorm_quant_ties_and_saturation_are_exact(K, dev, symmetric):
    # rows of +-1 (mean 0, variance 1, eps 0): y = +-gamma + beta exactly; y / 0.5 hits x.5
    beta = np.array([0.0, 0.5, 1.0, -1.0, 63.0, -63.0, 63.5, -63.5, 100.0, 2.0])
    x = np.array([[1.0, -1.0] * 5, [-1.0, 1.0] * 5])
    q, y = K.layernorm_quant(
        t(x, dev), t(np.full(10, 0.75), dev), t(beta, dev),
        QuantSpec("int8", 0.5, symmetric=symmetric), eps=0.0, float_out=False,
    )  # fmt: skip
    assert y is None
    want = np.clip(np.round((x * 0.75 + beta) / 0.5), -127 if symmetric else -128, 127)
    np.testing.assert_array_equal(q.cpu().numpy(), want)


def test_layernorm_quant_fp16_keeps_its_float_output_in_fp16(K, dev):
    x = np.random.default_rng(2).normal(0, 1, (4, 24))
    q, y = K.layernorm_quant(
        t(x, dev, torch.float16), t(np.ones(24), dev), t(np.zeros(24), dev),
        QuantSpec("fp8", 0.01), residual=t(x, dev, torch.float16),
    )  # fmt: skip
    assert y.dtype == torch.float16 and q.dtype == torch.float8_e4m3fn
    h = 2 * x.astype(np.float16).astype(np.float64)
    np.testing.assert_allclose(y.cpu().double().numpy(), np_ln(h, 1, 0, 1e-12), atol=2e-3)


def test_layernorm_quant_rejects_a_wrong_gamma(K, dev):
    with pytest.raises(InputMismatchError, match=r"\[8\]"):
        K.layernorm_quant(t(np.ones((2, 8)), dev), t(np.ones(7), dev), t(np.ones(7), dev),
                          QuantSpec("int8", 1.0))  # fmt: skip


# -------------------------------------------------------------------------- GELU → quant
@pytest.mark.parametrize("fmt", ["int8", "fp8"])
def test_gelu_quant_matches_float64_oracle(K, dev, fmt):
    rng = np.random.default_rng(3)
    x, b = rng.normal(0, 2, (7, 45)), rng.normal(0, 0.5, 45)
    scale = 6.0 / (127 if fmt == "int8" else 448)
    q, y = K.gelu_quant(t(x, dev), QuantSpec(fmt, scale), bias=t(b, dev), float_out=True, block=64)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    want = np_gelu(f32(x) + f32(b))
    np.testing.assert_allclose(y.cpu().numpy(), want, rtol=1e-5, atol=1e-6)
    assert_codes(q, want, scale, fmt)


def test_gelu_quant_saturates_large_and_zeroes_very_negative(K, dev):
    x = np.array([[1e3, 200.0, -1e3, -30.0, 0.0]])
    q8, _ = K.gelu_quant(t(x, dev), QuantSpec("int8", 1.0))
    f8, _ = K.gelu_quant(t(x, dev), QuantSpec("fp8", 0.1))
    np.testing.assert_array_equal(q8.cpu().numpy(), [[127, 127, 0, 0, 0]])
    np.testing.assert_array_equal(f8.cpu().double().numpy(), [[448, 448, 0, 0, 0]])


# ---------------------------------------------------------------------- GEMM epilogues
BLOCK = (16, 16, 32)  # small tiles: 37x45x70 spans 3x3 tiles and 3 K steps, all ragged


def _operands(dev: str, fmt: str, rng: np.random.Generator):
    m, n, k = 37, 45, 70
    if fmt == "int8":
        a = t(rng.integers(-128, 128, (m, k)), dev, torch.int8)
        w = t(rng.integers(-127, 128, (n, k)), dev, torch.int8)
    else:
        a = t(rng.normal(0, 40, (m, k)), dev).to(torch.float8_e4m3fn)
        w = t(rng.normal(0, 40, (n, k)), dev).to(torch.float8_e4m3fn)
    acc = a.cpu().double().numpy() @ w.cpu().double().numpy().T  # exact in float64
    return a, w, acc


def test_int8_gemm_accumulates_exactly_in_int32(K, dev):
    a, w, acc = _operands(dev, "int8", np.random.default_rng(4))
    out = K.scaled_gemm(a, w, 1.0, t(np.ones(45), dev), block=BLOCK)
    assert out.dtype == torch.float32 and np.abs(acc).max() < 2**24  # exact in float32
    np.testing.assert_array_equal(out.cpu().numpy(), acc)


def test_gemm_default_tiles_on_a_ragged_shape(K, dev):
    # the GPU's default 128x128x64 tiles: 2x2 tiles and 4 K steps, all ragged
    rng = np.random.default_rng(7)
    a = t(rng.integers(-128, 128, (130, 200)), dev, torch.int8)
    w = t(rng.integers(-127, 128, (150, 200)), dev, torch.int8)
    out = K.scaled_gemm(a, w, 1.0, t(np.ones(150), dev))
    np.testing.assert_array_equal(out.cpu().numpy(), a.cpu().double() @ w.cpu().double().T)


@pytest.mark.parametrize("fmt", ["int8", "fp8"])
@pytest.mark.parametrize("out_dtype", ["float32", "float16"])
def test_gemm_dequant_bias_epilogue(K, dev, fmt, out_dtype):
    rng = np.random.default_rng(5)
    a, w, acc = _operands(dev, fmt, rng)
    s_w, bias = rng.uniform(1e-4, 1e-3, 45), rng.normal(0, 1, 45)
    ep = K.Epilogue(bias=t(bias, dev), out_dtype=getattr(torch, out_dtype))
    out = K.scaled_gemm(a, w, 0.02, t(s_w, dev), ep, block=BLOCK)
    want = acc * 0.02 * s_w.astype(np.float32) + bias.astype(np.float32)
    tol = 1e-5 if out_dtype == "float32" else 2e-3
    np.testing.assert_allclose(out.cpu().double().numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("fmt", ["int8", "fp8"])
@pytest.mark.parametrize("requant", ["int8", "fp8"])
def test_gemm_gelu_requantize_epilogue(K, dev, fmt, requant):
    rng = np.random.default_rng(6)
    a, w, acc = _operands(dev, fmt, rng)
    s_w, bias = rng.uniform(1e-4, 1e-3, 45), rng.normal(0, 1, 45)
    s_out = 3.0 / (127 if requant == "int8" else 448)
    ep = K.Epilogue(bias=t(bias, dev), gelu=True, requant=QuantSpec(requant, s_out))
    out = K.scaled_gemm(a, w, 0.02, t(s_w, dev), ep, block=BLOCK)
    want = np_gelu(acc * 0.02 * s_w.astype(np.float32) + bias.astype(np.float32))
    assert_codes(out, want, s_out, requant)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gemm_requantize_ties_and_saturation_are_exact(K, dev, symmetric):
    # a[i, 0] = v_i, w[n, 0] = c_n, zeros elsewhere: acc = v c; with a_scale 0.5 odd v c -> x.5
    v = np.array([1, 3, 5, -1, -3, -5, 127, -127, -128, 0, 85, -85, 17])
    c = np.array([1, 2, 3, 4, -1])
    a = np.zeros((len(v), 40)), np.zeros((len(c), 40))
    a[0][:, 0], a[1][:, 0] = v, c
    ep = K.Epilogue(requant=QuantSpec("int8", 1.0, symmetric=symmetric))
    out = K.scaled_gemm(t(a[0], dev, torch.int8), t(a[1], dev, torch.int8), 0.5,
                        t(np.ones(len(c)), dev), ep, block=BLOCK)  # fmt: skip
    want = np.clip(np.round(np.outer(v, c) * 0.5), -127 if symmetric else -128, 127)
    np.testing.assert_array_equal(out.cpu().numpy(), want)
    assert want[1, 0] == 2 and want[0, 0] == 0 and want[6, 3] == 127  # 1.5->2, 0.5->0, 254 sat


def test_gemm_rejects_mismatched_operands(K, dev):
    a = t(np.zeros((4, 32)), dev, torch.int8)
    with pytest.raises(InputMismatchError, match="K differs"):
        K.scaled_gemm(a, t(np.zeros((8, 16)), dev, torch.int8), 1.0, t(np.ones(8), dev))
    with pytest.raises(InputMismatchError, match="int8 or float8"):
        K.scaled_gemm(a.float(), a.float(), 1.0, t(np.ones(4), dev))
    with pytest.raises(InputMismatchError, match="one per output channel"):
        K.scaled_gemm(a, a, 1.0, t(np.ones(3), dev))


@pytest.mark.parametrize("precision", ["int8-static", "fp8"])
def test_quant_linear_on_the_triton_kernels_matches_its_float64_reference(K, dev, precision):
    from workbench.backends.pytorch.lowp import QuantLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 20)  # N = 20 is padded to 24 (int8) / 32 (fp8) inside
    x = torch.randn(3, 5, 48, device=dev)
    q = QuantLinear(lin, precision, amax=3.0).to(dev)
    q.triton_kernels = True
    got = q(x)
    q.simulate = True  # quantize-dequantize in float64: lowp's oracle
    np.testing.assert_allclose(got.cpu().numpy(), q(x).cpu().numpy(), rtol=1e-5, atol=1e-5)
    assert got.shape == (3, 5, 20)


# ------------------------------------------------------------------ packaging behaviour
def test_import_workbench_imports_neither_triton_nor_torch():
    code = (
        "import sys, workbench, workbench.backends.pytorch.kernels as k; "
        "k.QuantSpec('int8', 1.0); print(sorted({'triton', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_triton_says_which_extra(monkeypatch):
    import importlib.util

    from workbench.backends.pytorch import kernels

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "triton" else real(n)
    )
    with pytest.raises(BackendUnavailableError, match=r"workbench\[kernels\]"):
        kernels.scaled_gemm  # noqa: B018


def test_quant_spec_rejects_bad_format_and_scale():
    with pytest.raises(ConfigError, match="'int8' or 'fp8'"):
        QuantSpec("int4", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="finite and > 0"):
        QuantSpec("int8", 0.0)
