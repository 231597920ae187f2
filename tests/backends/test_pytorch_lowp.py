"""Low-precision Linears on CPU: quantization math against NumPy, kernels vs reference, mapping."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (extra: torch)")

from workbench.backends.pytorch.lowp import (  # noqa: E402
    FP8_MAX,
    QuantLinear,
    linear_paths,
    quantize_linears,
    set_simulate,
)
from workbench.calibration.fp8 import round_to_e4m3  # noqa: E402
from workbench.errors import CalibrationError, ConfigError  # noqa: E402


def np_int8(x: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """NumPy oracle: ONNX QuantizeLinear (round half to even, saturate to int8)."""
    return np.clip(np.round(x.astype(np.float32) / np.float32(scale)), -128, 127)


def np_linear_reference(
    x: np.ndarray, lin, precision: str, amax: float | None, per_channel: bool = True
) -> np.ndarray:
    """Quantize-dequantize input and per-channel weight in NumPy, then a float64 matmul."""
    w = lin.weight.detach().numpy().astype(np.float64)
    b = lin.bias.detach().numpy().astype(np.float64)
    qmax = FP8_MAX if precision == "fp8" else 127.0
    s_w = np.abs(w).max(axis=1, keepdims=True) / qmax
    s_w[s_w == 0] = 1.0  # an all-zero channel
    if not per_channel:
        s_w = np.full_like(s_w, s_w.max())
    if precision == "fp8":
        w_dq = round_to_e4m3(w / s_w) * s_w
        s_a = amax / qmax
        x_dq = round_to_e4m3(np.clip(x.astype(np.float64) / s_a, -448, 448)) * s_a
    else:
        w_dq = np.round(w / s_w) * s_w
        if precision == "int8-static":
            s_a = np.float32(amax / 127.0)
        else:
            s_a = np.abs(x).max(axis=-1, keepdims=True).astype(np.float32) / np.float32(127.0)
        x_dq = np_int8(x, s_a) * s_a
    return x_dq @ w_dq.T + b


@pytest.fixture
def mean_pool_classifier():
    """The workbench's MeanPoolClassifier around a tiny random BERT (hidden 64, 2 layers)."""
    from transformers import BertConfig, BertModel

    from workbench.backends.pytorch.model import MeanPoolClassifier

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        attn_implementation="sdpa",
    )
    model = MeanPoolClassifier(BertModel(cfg, add_pooling_layer=False), 2)
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_feeds(tiny_model) -> list[dict[str, np.ndarray]]:
    """Tokenized batches of distinct sentences, mask all ones (nothing to mask out)."""
    from tests.calibration.conftest import random_texts
    from workbench.data.tokenize import TextTokenizer

    tok = TextTokenizer.from_model_dir(tiny_model.encoder_dir, tiny_model.max_length)
    texts = random_texts(48, seed=5)
    feeds = []
    for i in range(0, len(texts), 8):
        f = tok.encode(texts[i : i + 8], pad_to=32)
        f["attention_mask"][:] = 1
        feeds.append(f)
    return feeds


@pytest.fixture
def linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 24)
    with torch.no_grad():
        lin.weight[3] *= 20.0  # channels of very different ranges: per-channel matters
        lin.weight[5] = 0.0  # an all-zero channel: scale must not divide by zero
    return lin.eval()


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("precision", ["fp8", "int8-static", "int8-dynamic"])
def test_reference_path_matches_numpy_oracle(linear, precision, per_channel):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 64)).astype(np.float32) * 2.0
    x[0, 0, :4] = [50.0, -50.0, 0.0, 1e-6]  # saturation and underflow
    amax = 6.0
    a = amax if precision != "int8-dynamic" else None
    q = QuantLinear(linear, precision, a, simulate=True, per_channel=per_channel)
    with torch.no_grad():
        got = q(torch.from_numpy(x)).numpy()
    want = np_linear_reference(x, linear, precision, amax, per_channel)
    assert got.shape == (2, 7, 24)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("precision", ["fp8", "int8-static", "int8-dynamic"])
def test_kernel_path_matches_reference_on_cpu(linear, precision, per_channel):
    """torch._scaled_mm / _int_mm (CPU builds) give the float64 reference's result."""
    q = QuantLinear(linear, precision, 5.0, simulate=False, per_channel=per_channel)
    r = QuantLinear(linear, precision, 5.0, simulate=True, per_channel=per_channel)
    for seed in (0, 1):
        x = torch.randn(3, 11, 64, generator=torch.Generator().manual_seed(seed)) * 2
        with torch.no_grad():
            got, want = q(x), r(x)
        torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-5)
    with torch.no_grad():  # M <= 16 rows (a batch-1 head): the INT8 path pads rows
        torch.testing.assert_close(q(x[0, :1]), r(x[0, :1]), rtol=2e-5, atol=2e-5)


def test_weight_quantization_is_per_channel_and_saturating(linear):
    q = QuantLinear(linear, "int8-static", 1.0)
    wq = q.weight_q[:24].numpy()
    assert wq.dtype == np.int8
    assert np.all(np.abs(wq[np.arange(24) != 5]).max(axis=1) == 127)  # every row uses its range
    assert np.all(wq[5] == 0)
    f = QuantLinear(linear, "fp8", 1.0)
    wf = f.weight_q.view(torch.float8_e4m3fn)[:24].float().numpy()
    assert np.abs(wf).max(axis=1)[3] == FP8_MAX
    # inputs beyond the calibrated range saturate instead of overflowing to NaN (e4m3fn)
    xq, _ = f.quantize_input(torch.tensor([[1e4, -1e4] + [0.0] * 62]))
    assert xq.float()[0, :2].tolist() == [FP8_MAX, -FP8_MAX]
    iq, _ = q.quantize_input(torch.tensor([[1e4, -1e4, 0.5 / 127, 1.5 / 127] + [0.0] * 60]))
    assert iq[0, :4].tolist() == [127, -128, 0, 2]  # ties round to even


def test_state_survives_dtype_casts(linear):
    """model.to(fp16) casts bias only: quantized weights and fp32 scales stay exact."""
    q = QuantLinear(linear, "fp8", 5.0)
    before = {k: v.clone() for k, v in q.state_dict().items() if k != "bias"}
    q = q.to(torch.bfloat16)
    for k, v in before.items():
        assert torch.equal(getattr(q, k), v), k
    assert q.bias.dtype == torch.bfloat16
    assert q(torch.randn(4, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_quantize_linears_exclude_and_errors(mean_pool_classifier):
    model = mean_pool_classifier
    paths = linear_paths(model)
    assert "head" in paths and len(paths) == 2 * 6 + 1
    amax = dict.fromkeys(paths, 4.0)
    q = quantize_linears(copy.deepcopy(model), amax, "int8-static", exclude=["head", "*.layer.1.*"])
    kinds = {n: type(m).__name__ for n, m in q.named_modules()}
    assert kinds["head"] == "Linear" and kinds["encoder.encoder.layer.1.output.dense"] == "Linear"
    assert kinds["encoder.encoder.layer.0.output.dense"] == "QuantLinear"
    with pytest.raises(ConfigError, match=r"no calibration amax.*layer\.0\.attention\.self\.query"):
        quantize_linears(copy.deepcopy(model), {}, "fp8")
    with pytest.raises(ConfigError, match="did you mean 'fp8'"):
        quantize_linears(copy.deepcopy(model), amax, "fp9")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"no nn\.Linear left"):
        quantize_linears(copy.deepcopy(model), amax, "fp8", exclude=["*"])
    quantize_linears(copy.deepcopy(model), {}, "int8-dynamic")  # no ranges needed


@pytest.mark.parametrize("precision", ["fp8", "int8-static", "int8-dynamic"])
def test_quantized_classifier_agrees_with_fp32(mean_pool_classifier, precision):
    from tests.gpu.conftest import random_feed

    feed = {k: torch.from_numpy(v) for k, v in random_feed(16, 24, 3, pad=True).items()}
    model = mean_pool_classifier
    amax = _hook_amax(model, feed)
    with torch.no_grad():
        ref = model(**feed)
        q = quantize_linears(copy.deepcopy(model), amax, precision)
        got = q(**feed)
        sim = set_simulate(q, True)(**feed)
    torch.testing.assert_close(got, sim, rtol=1e-4, atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    assert float(cos.min()) > 0.98, precision


def _hook_amax(model, feed) -> dict[str, float]:
    """Max |input| of every Linear over one batch (a torch-side max calibration)."""
    amax: dict[str, float] = {}
    hooks = [
        mod.register_forward_hook(
            lambda m, inp, out, n=name: amax.__setitem__(
                n, max(amax.get(n, 0.0), float(inp[0].abs().max()))
            )
        )
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    ]
    with torch.no_grad():
        model(**feed)
    for h in hooks:
        h.remove()
    return amax


# --------------------------------------------------------- table -> module mapping
def test_linear_amax_from_table_covers_every_linear(tiny_model, tiny_onnx, tiny_feeds):
    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.backends.pytorch.lowp_map import (
        linear_amax_from_table,
        linear_inputs,
        quantize_from_table,
    )
    from workbench.backends.pytorch.model import load_torch_classifier
    from workbench.calibration.table import calibrate

    table = calibrate(tiny_onnx, tiny_feeds, "max", open_runner=open_ort_runner)
    amax = linear_amax_from_table(table, tiny_onnx)
    model = load_torch_classifier(tiny_model)
    # every Linear that runs; the encoder's pooler is never called by MeanPoolClassifier
    assert set(amax) == set(linear_paths(model)) - {"encoder.pooler.dense"}
    inputs = linear_inputs(tiny_onnx)
    for path, value in amax.items():
        assert value == max(table.amax[t] for t in inputs[path]) and value > 0
    # the amax really is that Linear's input: compare with a torch hook on the same data
    feeds = {
        k: torch.from_numpy(np.concatenate([f[k] for f in tiny_feeds]))
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }
    torch_amax = _hook_amax(model, feeds)
    for path, value in amax.items():
        assert value == pytest.approx(torch_amax[path], rel=1e-4), path
    with pytest.raises(ConfigError, match="pooler"):
        quantize_linears(copy.deepcopy(model), amax, "int8-static")
    q = quantize_from_table(model, table, tiny_onnx, "int8-static")
    assert all(isinstance(q.get_submodule(p), QuantLinear) for p in amax)
    assert type(q.get_submodule("encoder.pooler.dense")) is torch.nn.Linear


def test_linear_amax_from_table_rejects_foreign_table(tiny_onnx, tiny_feeds, tmp_path):
    from dataclasses import replace

    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.backends.pytorch.lowp_map import linear_amax_from_table
    from workbench.calibration.table import calibrate

    table = calibrate(tiny_onnx, tiny_feeds[:1], "max", open_runner=open_ort_runner)
    with pytest.raises(CalibrationError, match="different model"):
        linear_amax_from_table(replace(table, model_sha256="0" * 64), tiny_onnx)
    with pytest.raises(CalibrationError, match="none of"):
        linear_amax_from_table(replace(table, amax={"x": 1.0}), tiny_onnx)


def test_shared_linear_gets_the_widest_range_of_its_calls(tmp_path):
    """ALBERT runs one layer N times: the exporter scopes its calls query, query_1, ... and one
    scale must serve every call, so the Linear gets the largest amax of them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from workbench.backends.onnxruntime.runner import open_ort_runner
    from workbench.backends.pytorch.lowp_map import (
        linear_amax_from_table,
        linear_inputs,
        module_path_of_node,
    )
    from workbench.calibration.table import calibrate

    w = numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="/inner/enc/layers.0/query/MatMul"),
        helper.make_node("Mul", ["h", "three"], ["h3"], name="/inner/enc/Mul"),
        helper.make_node("MatMul", ["h3", "w"], ["y"], name="/inner/enc/layers.0/query_1/MatMul"),
    ]
    three = numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")
    graph = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8])],
        [w, three],
    )
    path = tmp_path / "shared.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert module_path_of_node(nodes[2].name) == "enc.layers.0.query"
    assert linear_inputs(path) == {"enc.layers.0.query": ["x", "h3"]}
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    table = calibrate(path, [{"x": x}], "max", open_runner=open_ort_runner)
    amax = linear_amax_from_table(table, path)
    assert amax["enc.layers.0.query"] == pytest.approx(3 * np.abs(x).max(), rel=1e-5)
