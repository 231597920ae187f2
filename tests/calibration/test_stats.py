"""Streaming statistics: exactness, batching invariance, padding masks, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from workbench.backends.onnxruntime.runner import open_ort_runner
from workbench.calibration.methods import compute_amax
from workbench.calibration.stats import TensorStats, collect_statistics, quantizable_tensors
from workbench.errors import CalibrationError, InputMismatchError


def raw_activations(onnx_path, names, feeds, tmp_path) -> dict[str, np.ndarray]:
    """Independent oracle: every value of ``names`` over ``feeds`` (a plain augmented session)."""
    model = onnx.load(str(onnx_path))
    for n in names:
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
        )
    path = tmp_path / "oracle.onnx"
    onnx.save(model, str(path))
    from workbench.backends.onnxruntime.runner import CPU_DISABLED_OPTIMIZERS

    sess = ort.InferenceSession(  # as the workbench's CPU sessions run (same float rounding)
        str(path),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),
    )
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for f in feeds:
        for n, v in zip(names, sess.run(names, f), strict=True):
            out[n].append(v.ravel())
    return {n: np.concatenate(v) for n, v in out.items()}


def test_quantizable_tensors_are_matmul_activation_inputs(tiny_onnx):
    names = quantizable_tensors(tiny_onnx)
    model = onnx.load(str(tiny_onnx))
    inits = {i.name for i in model.graph.initializer}
    matmul_inputs = {
        i for n in model.graph.node if n.op_type in ("MatMul", "Gemm") for i in n.input
    }
    assert names and set(names) <= matmul_inputs
    assert not set(names) & inits
    # 2 layers x (qkv input, q, k^T, probs, v, attention-out input, ffn1 input, ffn2 input) + head
    assert len(names) == 2 * 8 + 1


def test_max_and_histogram_equal_numpy_on_same_activations(tiny_onnx, unpadded_feeds, tmp_path):
    names = quantizable_tensors(tiny_onnx)
    stats = collect_statistics(tiny_onnx, unpadded_feeds, open_runner=open_ort_runner)
    raw = raw_activations(tiny_onnx, names, unpadded_feeds, tmp_path)
    for n in names:
        x = raw[n]
        s = stats[n]
        assert s.count == x.size
        assert compute_amax(s, "max") == float(np.abs(x).max())  # exact
        assert s.min == float(x.min()) and s.max == float(x.max())
        want, _ = np.histogram(np.abs(x), bins=s.num_bins, range=(0.0, s.hist_range))
        np.testing.assert_array_equal(s.hist, want)
        assert s.hist_range / 2 <= s.absmax < s.hist_range


def test_streaming_is_exact_for_synthetic_arrays():
    rng = np.random.default_rng(1)
    data = (rng.standard_t(2, size=(64, 50)) * np.linspace(0.01, 5, 64)[:, None]).astype(np.float32)
    before = data.copy()
    one = TensorStats("t")
    one.update(data)
    many = TensorStats("t")
    for row in data:  # ranges grow many times along the way
        many.update(row)
    np.testing.assert_array_equal(one.hist, many.hist)
    assert (one.hist_range, one.min, one.max, one.count) == (
        many.hist_range,
        many.min,
        many.max,
        many.count,
    )
    halves = TensorStats("t")
    other = TensorStats("t")
    halves.update(data[:32])
    other.update(data[32:])
    halves.merge(other)
    np.testing.assert_array_equal(one.hist, halves.hist)
    np.testing.assert_array_equal(data, before)  # update() works on a copy


def test_one_batch_of_64_equals_64_batches_of_1(tiny_onnx, tiny_tokenizer, calib_texts):
    big = collect_statistics(
        tiny_onnx, [tiny_tokenizer.encode(calib_texts)], open_runner=open_ort_runner
    )
    single = collect_statistics(
        tiny_onnx, (tiny_tokenizer.encode([t]) for t in calib_texts), open_runner=open_ort_runner
    )
    for n, a in big.items():
        b = single[n]
        assert a.count == b.count and a.n_samples == b.n_samples == 64
        assert a.hist_range == b.hist_range
        # same real tokens; only float rounding of differently shaped GEMMs differs
        assert a.absmax == pytest.approx(b.absmax, rel=1e-5)
        assert np.abs(a.hist - b.hist).sum() <= max(4, 1e-3 * a.count)


def test_padded_positions_are_excluded(tiny_onnx, tiny_tokenizer, calib_texts):
    texts = calib_texts[:16]
    feed = tiny_tokenizer.encode(texts, pad_to=tiny_tokenizer.max_length)
    lengths = feed["attention_mask"].sum(axis=1)
    assert (lengths < feed["input_ids"].shape[1]).all()
    stats = collect_statistics(tiny_onnx, [feed], open_runner=open_ort_runner)
    hidden = 32
    names = quantizable_tensors(tiny_onnx)
    assert stats[names[0]].count == lengths.sum() * hidden  # [B, S, H] embeddings output
    heads = 2
    probs = next(n for n in names if "Where_1" in n)  # attention probabilities [B, h, S, S]
    assert stats[probs].count == heads * (lengths**2).sum()
    assert stats[names[-1]].count == len(texts) * hidden  # pooled [B, H]: no token axis


def test_nan_names_tensor_and_sample(log_model):
    ok = np.full((2, 4), 150, dtype=np.int64)
    bad = ok.copy()
    bad[1, 2] = 5  # Log(5 - 100) = NaN at sample 2 + 1 = 3
    mask = np.ones_like(ok)
    feeds = [{"input_ids": ok, "attention_mask": mask}, {"input_ids": bad, "attention_mask": mask}]
    with pytest.raises(CalibrationError, match=r"'act'.*sample 3"):
        collect_statistics(log_model, feeds, open_runner=open_ort_runner)
    masked = mask.copy()
    masked[1, 2:] = 0  # the bad value sits at a padded position: ignored
    stats = collect_statistics(
        log_model,
        [feeds[0], {"input_ids": bad, "attention_mask": masked}],
        open_runner=open_ort_runner,
    )
    assert stats["act"].count == 8 + 4 + 2


def test_inf_raises(log_model):
    ids = np.full((1, 3), 100, dtype=np.int64)  # Log(0) = -inf
    with pytest.raises(CalibrationError, match="NaN/Inf"):
        collect_statistics(
            log_model,
            [{"input_ids": ids, "attention_mask": np.ones_like(ids)}],
            open_runner=open_ort_runner,
        )


def test_empty_calibration_set(tiny_onnx):
    with pytest.raises(CalibrationError, match="empty"):
        collect_statistics(tiny_onnx, [], open_runner=open_ort_runner)


def test_input_names_that_do_not_match(tiny_onnx, unpadded_feeds):
    renamed = {"ids": unpadded_feeds[0]["input_ids"], "mask": unpadded_feeds[0]["attention_mask"]}
    with pytest.raises(InputMismatchError, match="input_ids"):
        collect_statistics(tiny_onnx, [renamed], open_runner=open_ort_runner)


def test_unknown_tensor_name(tiny_onnx, unpadded_feeds):
    with pytest.raises(InputMismatchError, match="no tensor"):
        collect_statistics(
            tiny_onnx, unpadded_feeds, tensor_names=["not-a-tensor"], open_runner=open_ort_runner
        )


def test_run_size_does_not_change_statistics(tiny_onnx, unpadded_feeds):
    big = collect_statistics(tiny_onnx, unpadded_feeds, open_runner=open_ort_runner)
    small = collect_statistics(
        tiny_onnx, unpadded_feeds, max_output_mb=0.01, open_runner=open_ort_runner
    )  # 1 row a run
    for n, a in big.items():
        assert small[n].count == a.count
        assert small[n].absmax == pytest.approx(a.absmax, rel=1e-5)
        assert np.abs(small[n].hist - a.hist).sum() <= max(4, 1e-3 * a.count)
