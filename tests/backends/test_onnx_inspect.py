"""inspect_onnx reads a classifier's interface from its graph; check_onnx_model refuses misfits.

Models are real exports of tiny random transformers models; the mismatches are planted
by exporting models that really have them (a small vocabulary, a [batch, seq, hidden]
encoder output, foreign input names).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.tiny_bert import default_tokenizer_dir, make_tiny_hf_classifier
from workbench.backends.onnxruntime.export import export_classifier
from workbench.backends.onnxruntime.inspect import OnnxModelInfo, check_onnx_model, inspect_onnx
from workbench.backends.pytorch.hf import inspect_hf_folder, load_hf_classifier
from workbench.data.tokenize import TextTokenizer
from workbench.errors import ModelError
from workbench.fileio import sha256_file

torch = pytest.importorskip("torch", reason="exporting test models needs torch (extra: torch)")
transformers = pytest.importorskip("transformers", reason="test models need transformers")

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer.from_model_dir(default_tokenizer_dir(), max_length=32)


@pytest.fixture(scope="module")
def classifier_onnx(tmp_path_factory, tok) -> Path:
    folder = make_tiny_hf_classifier(tmp_path_factory.mktemp("hf"), LABELS)
    info = inspect_hf_folder(folder)
    exp = export_classifier(
        load_hf_classifier(info),
        tok,
        info.content_key,
        info.input_names,
        out_dir=tmp_path_factory.mktemp("onnx"),
    )
    return Path(exp.onnx_path)


def _raw_export(module, path: Path, names: list[str], output: str, vocab: int) -> Path:
    """Plain torch.onnx.export, as a user might have done it, with ids inside ``vocab``."""
    ids = torch.randint(0, vocab, (2, 7))
    args = (ids, torch.ones_like(ids))[: len(names)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes={n: {0: "b", 1: "s"} for n in names},
            opset_version=17,
            dynamo=False,
        )
    return path


class _Logits(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]


def test_exported_classifier_is_read_and_accepted(classifier_onnx, tok):
    info = inspect_onnx(classifier_onnx)
    assert info == OnnxModelInfo(
        path=str(classifier_onnx.resolve()),
        sha256=sha256_file(classifier_onnx),
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        output_name="logits",
        output_rank=2,
        num_outputs=3,
        vocab_size=30522,
    )
    check_onnx_model(info, tok, LABELS)


def test_default_classifier_export_is_read(tiny_onnx, tok):
    info = inspect_onnx(tiny_onnx)
    assert (info.num_outputs, info.vocab_size, info.output_rank) == (2, 30522, 2)
    check_onnx_model(info, tok, ["rotten", "fresh"])


def test_vocab_is_found_through_ort_optimizer_and_int8(classifier_onnx, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = tmp_path / "fused.onnx"
    optimized = optimize_model(str(classifier_onnx), "bert", num_heads=2, hidden_size=32)
    optimized.save_model_to_file(str(fused))
    assert inspect_onnx(fused).vocab_size == 30522
    quant = tmp_path / "q.onnx"  # the embedding table itself quantized (Gather on int8)
    quantize_dynamic(
        str(classifier_onnx),
        str(quant),
        op_types_to_quantize=["Gather", "MatMul"],
        weight_type=QuantType.QInt8,
    )
    info = inspect_onnx(quant)
    assert (info.vocab_size, info.num_outputs) == (30522, 3)


def _run(model, path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Save a hand-built graph and run it in ONNX Runtime, proving it is a valid model."""
    import onnx

    onnx.save(model, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def test_vocab_through_dequantize_and_fused_embedding_ops(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", 4])
    table = numpy_helper.from_array(rng.integers(-9, 9, (77, 4)).astype(np.int8), "table_q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["table_q", "scale"], ["table"]),
            helper.make_node("Gather", ["table", "input_ids"], ["logits"]),
        ],
        "dq_gather",
        [ids],
        [out],
        [table, scale],
    )
    dq = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _run(dq, tmp_path / "dq.onnx", {"input_ids": np.array([[1, 76]], np.int64)})
    assert inspect_onnx(tmp_path / "dq.onnx").vocab_size == 77

    ids32 = helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["b", "s"])
    hidden = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", 8])
    inits = [
        numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
        for name, shape in [("word", (55, 8)), ("pos", (16, 8)), ("gamma", (8,)), ("beta", (8,))]
    ]
    node = helper.make_node(
        "EmbedLayerNormalization",
        ["input_ids", "", "word", "pos", "", "gamma", "beta"],
        ["logits", "mask_index"],
        domain="com.microsoft",
    )
    fused = helper.make_model(
        helper.make_graph([node], "fused", [ids32], [hidden], inits),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    got = _run(fused, tmp_path / "fused.onnx", {"input_ids": np.array([[2, 54]], np.int32)})
    assert got[0].shape == (1, 2, 8)
    assert inspect_onnx(tmp_path / "fused.onnx").vocab_size == 55
    onnx.checker.check_model(str(tmp_path / "fused.onnx"))


def test_small_vocabulary_is_refused_before_ort_would_crash(tmp_path, tok):
    cfg = transformers.BertConfig(
        vocab_size=1000,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    model = _Logits(transformers.BertForSequenceClassification(cfg).eval())
    path = _raw_export(model, tmp_path / "small.onnx", ["input_ids", "attention_mask"], "out", 1000)
    info = inspect_onnx(path)
    assert info.vocab_size == 1000
    feed = tok.encode(["an unremarkable but pleasant evening at the movies"])
    assert feed["input_ids"].max() >= 1000  # the real tokenizer does emit ids past the table
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="out of"):  # what users met before this check
        sess.run(None, {n: feed[n] for n in info.input_names})
    with pytest.raises(ModelError, match=r"embedding table has 1000 rows.*30522 tokens"):
        check_onnx_model(info, tok, LABELS)


def test_embedding_model_output_is_refused(tmp_path, tok):
    cfg = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    model = _Logits(transformers.BertModel(cfg).eval())
    path = _raw_export(
        model, tmp_path / "enc.onnx", ["input_ids", "attention_mask"], "last_hidden_state", 30522
    )
    info = inspect_onnx(path)
    assert (info.output_rank, info.num_outputs) == (3, 32)
    with pytest.raises(ModelError, match=r"embedding model: \[batch, seq, hidden\]"):
        check_onnx_model(info, tok, LABELS)


def test_label_count_must_equal_the_logits(classifier_onnx, tok):
    with pytest.raises(ModelError, match=r"labels = \['a', 'b'\] has 2 names, the model outputs 3"):
        check_onnx_model(inspect_onnx(classifier_onnx), tok, ["a", "b"])


def test_inputs_the_tokenizer_does_not_produce_are_refused(tmp_path, tok):
    cfg = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    model = _Logits(transformers.BertForSequenceClassification(cfg).eval())
    path = _raw_export(model, tmp_path / "named.onnx", ["ids", "mask"], "logits", 30522)
    info = inspect_onnx(path)
    assert info.input_names == ("ids", "mask")
    with pytest.raises(ModelError, match=r"takes inputs \['ids', 'mask'\]"):
        check_onnx_model(info, tok, ["a", "b"])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        inspect_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        inspect_onnx(bad)
