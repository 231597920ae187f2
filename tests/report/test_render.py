"""HTML content of the report, rendered from realistic records (no browser needed)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from html import unescape

import numpy as np
import pytest

from tests.run_fixtures import XSS_TEXT, make_demo_run
from workbench.cli import main
from workbench.data.representativeness import TextProfile, assess
from workbench.gate import evaluate_gate, parse_policy, write_gate_outputs
from workbench.report import render_report
from workbench.results.records import load_run, save_record


def _text(html: str) -> str:
    """Visible-ish text: tags stripped, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _section(html: str, section_id: str) -> str:
    m = re.search(rf'<section id="{section_id}".*?</section>', html, re.S)
    assert m, f"section {section_id} missing"
    return m.group(0)


def test_opens_with_the_gate_verdict(report_html):
    body = report_html.split("<body>", 1)[1]
    assert body.index('id="verdict"') < body.index('id="summary"')
    verdict = _text(_section(report_html, "verdict"))
    assert "Gate PASSED" in verdict
    assert "candidate demo-run/ort-int8-dynamic vs baseline demo-run/ort-fp32" in verdict
    assert "ort-int8-dynamic speed-up ×1.61 vs ort-fp32" in verdict


def test_summary_table(report_html):
    table = _section(report_html, "summary")
    for name in ("pytorch-fp32", "ort-fp32", "ort-int8-static", "ort-int8-dynamic"):
        assert f'data-build="{name}"' in table
    row = re.search(r'data-build="ort-int8-dynamic">(.*?)</tr>', table, re.S)
    assert row
    cells = _text(row.group(1))
    # speed-ups at batch 1 x seq 128: 9.4/3.8 vs PyTorch FP32, 6.1/3.8 vs ORT FP32
    assert "2.47×" in cells and "1.61×" in cells
    assert "int8-dynamic" in cells and "onnxruntime" in cells and "cpu" in cells
    assert "kernels: ONNX Runtime CPU" in cells  # whose kernels ran (BuildResult.kernels)
    assert 'id="kernels-note"' not in table  # the TensorRT caveat is for GPU builds only
    assert re.search(r"\[−?\d+\.\d\d, [+−]?\d+\.\d\d\]", cells)  # paired CI of the delta
    head = _text(re.search(r"<thead>.*?</thead>", table, re.S).group(0))
    assert head.strip().endswith(
        "× PyTorch FP32 × ORT FP32"
    )  # the gate's columns, not behind others
    more = re.search(r'id="summary-more".*?data-build="ort-int8-dynamic">(.*?)</tr>', table, re.S)
    assert more and "100%" in _text(more.group(1))  # INT8 coverage, among the secondary columns
    assert "Wilson" in table


def test_charts_are_embedded_svg_and_nothing_is_remote(report_html):
    assert report_html.count('src="data:image/svg+xml;base64,') >= 2
    assert "Content-Security-Policy" in report_html and "default-src 'none'" in report_html
    assert not re.search(r'(src|href)="(https?:)?//', report_html)
    assert "<script" not in report_html.lower()


def test_untrusted_text_is_escaped(report_html):
    samples = _section(report_html, "samples")
    assert "&lt;script&gt;document.title=&#39;pwned&#39;" in samples
    assert "&amp; its &#34;fans&#34;" in samples
    assert XSS_TEXT in unescape(samples)


def test_flipped_and_most_changed_samples(report_html):
    samples = _section(report_html, "samples")
    block = re.search(r'<details[^>]*data-build="ort-int8-static">(.*?)</details>', samples, re.S)
    assert block and "open" in block.group(0).split(">", 1)[0]
    flipped = block.group(1).split("Most-changed samples")[0]
    assert flipped.count('<td class="text">') <= 10
    assert "&lt;script&gt;" in flipped  # the flipped XSS sample has the largest logit change
    assert "predictions flipped" in block.group(1) or "flipped" in samples


def test_notes_confusion_latency_provenance(report_html):
    notes = _text(_section(report_html, "notes"))
    assert "static QDQ INT8 no faster than FP32 on this CPU (AVX2, no VNNI)" in notes
    confusion = _section(report_html, "confusion")
    assert confusion.count('class="confusion"') == 4 and "rotten" in confusion
    latency = _text(_section(report_html, "latency"))
    assert "perf_counter_ns" in latency and "19.50" in latency  # batch 8 p50 of int8-dynamic
    prov = _text(_section(report_html, "provenance"))
    for needle in ("0123456789abcdef", "onnxruntime 1.32.0", "split=13", "ababab", "(2 cores;"):
        assert needle in prov


def test_no_gate_and_corrupt_gate(tmp_path, gated_run):
    run = tmp_path / "run"
    shutil.copytree(gated_run, run)
    (run / "gate.json").unlink()
    html = render_report(run).read_text()
    assert "No gate decision" in _text(_section(html, "verdict"))
    (run / "gate.json").write_text("{not json")
    html = render_report(run, out=tmp_path / "x.html").read_text()
    assert "gate.json is present but unreadable" in _text(_section(html, "verdict"))
    assert not list(run.glob(".*.tmp")), "atomic write left a temp file"


def test_failed_gate_verdict(tmp_path, gated_run):
    run = tmp_path / "run"
    shutil.copytree(gated_run, run)
    d = evaluate_gate(run, "ort-fp32", run, "ort-int8-static", parse_policy({"min_speedup": 1.5}))
    write_gate_outputs(d, run)
    verdict = _text(_section(render_report(run).read_text(), "verdict"))
    assert "Gate FAILED" in verdict and "speed-up ×0.97" in verdict and "FAIL" in verdict


def test_missing_predictions_are_reported_not_hidden(tmp_path, gated_run):
    run = tmp_path / "run"
    shutil.copytree(gated_run, run)
    (run / "predictions" / "ort-int8-static.parquet").unlink()
    html = render_report(run).read_text()
    assert "predictions of ort-int8-static are missing" in _text(html)
    assert 'data-build="ort-int8-static"' in _section(html, "summary")


def _calibration_comparison():
    """A real CalibrationComparison record (workbench/results/calibration.py)."""
    from tests.run_fixtures import provenance
    from workbench.results.calibration import (
        CalibrationComparison,
        MethodComparison,
        TensorComparison,
        TensorHistogram,
    )

    rng = np.random.default_rng(0)
    methods = ["max", "entropy", "mse"]
    amax = {"max": 8.0, "entropy": 3.1, "mse": 2.8}
    sqnr = {"max": 18.2, "entropy": 27.5, "mse": float("inf")}
    names = [f"/encoder/layer.{i}/attention/self/query/MatMul_output_0<b>" for i in range(3)]
    hists = [
        TensorHistogram(
            n,
            rng.integers(0, 5000, 64).tolist(),
            np.linspace(0, 8, 65).tolist(),
            0.125,
            8.0,
            amax,
            sqnr,
            9.3,
        )
        for n in names
    ]
    tensors = [
        TensorComparison(n, ["MatMul_1"], 4096, 8.0, amax, sqnr, {m: 0.001 for m in methods}, 9.3)
        for n in [*names, "/pooler/dense/MatMul_input"]
    ]
    rows = [
        MethodComparison(
            m,
            f"t-{m}.json",
            f"c-{m}.cache",
            f"q-{m}.onnx",
            "ab" * 32,
            400,
            a,
            g,
            0.5,
            0.99,
            0.9,
            25.0,
            12.0,
            0.001,
        )
        for m, a, g in [("max", 0.741, 0.93), ("entropy", 0.779, 0.985), ("mse", 0.781, 0.99)]
    ]
    return CalibrationComparison(
        schema_version=1,
        model_path="m.onnx",
        model_sha256="cd" * 32,
        calibration_set_sha256="ab" * 32,
        n_calibration_samples=512,
        test_set_sha256="ef" * 32,
        n_test=400,
        labels=["rotten", "fresh"],
        fp32_accuracy=0.785,
        methods=rows,
        best_method="mse",
        all_tensors=tensors,
        sensitive_tensors=hists,
        sqnr_samples=64,
        per_channel=False,
        exclude=[],
        statistics_seconds=12.5,
        statistics_peak_rss_mb=640.0,
        provenance=provenance(),
    )


def test_calibration_and_calibset_sections(tmp_path, gated_run):
    run = tmp_path / "run"
    shutil.copytree(gated_run, run)
    cmp = _calibration_comparison()
    static = load_run(run).build("ort-int8-static")
    rows = [
        dataclasses.replace(m, qdq_model_sha256=static.model_sha256) if m.method == "max" else m
        for m in cmp.methods
    ]
    save_record(dataclasses.replace(cmp, methods=rows), run / "calibration_comparison.json")
    rng = np.random.default_rng(0)
    rep = assess(
        TextProfile(rng.integers(5, 20, 128), rng.integers(0, 2, 128)),
        TextProfile(rng.integers(5, 80, 1000), rng.integers(0, 2, 1000)),
        max_length=128,
        label_names=["rotten", "fresh"],
        target_name="test split",
        calibration_set="calibration_sets/short-only",
    )
    save_record(rep, run / "calibset_report.json")
    html = render_report(run).read_text()
    cal = _section(html, "calibration")
    assert cal.count('src="data:image/svg+xml;base64,') == 3
    methods = _text(re.search(r'<table id="calibration-methods".*?</table>', cal, re.S).group(0))
    assert "entropy 77.90% −0.60" in methods and "mse best 78.10%" in methods
    assert "max = ort-int8-static" in methods  # the method whose Q/DQ file the build ran
    assert "cos min" not in methods  # degenerate: −1 for every method on real runs
    assert "27.5" in cal and "∞" in cal  # SQNR null in JSON: no quantization noise
    assert "MatMul_output_0&lt;b&gt;" in cal and "/pooler/dense/MatMul_input" in cal
    assert "best_method" in cal and "statistics_peak_rss_mb" in cal
    cs = _text(_section(html, "calibset"))
    assert "not representative" in cs and "length_psi" in cs and "test split" in cs
    assert _section(html, "calibset").count("data:image/svg+xml") == 1
    assert "sequence length min / opt / max" in cs


def test_compare_runs(tmp_path, gated_run):
    other = tmp_path / "release"
    make_demo_run(other, seed=0, cpu="AMD EPYC 7B13", run_id="release-1.0")
    html = render_report(gated_run, compare=other, out=tmp_path / "cmp.html").read_text()
    cmp_ = _section(html, "compare")
    assert "release-1.0" in cmp_ and "different hardware" in cmp_
    assert cmp_.count("<tr>") >= 5  # header + 4 common builds
    assert "[0.00, 0.00]" in cmp_  # same seed: identical predictions, paired CI of zero


def test_cli_report(tmp_path, gated_run, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(gated_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert out.stat().st_size > 10_000
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("quiet_run", [True])
def test_run_without_latency_or_accuracy_still_renders(tmp_path, quiet_run):
    from tests.run_fixtures import SyntheticBuild, write_run

    labels = np.array([0, 1, 1, 0, 1])
    builds = [
        SyntheticBuild("pytorch-fp32", "pytorch", "fp32", np.eye(2)[labels] * 2.0, {}),
        SyntheticBuild("trt-int8", "tensorrt", "int8", None, {}, device="NVIDIA H100"),
    ]
    write_run(tmp_path / "r", labels, builds, gpu="NVIDIA H100", with_calibration=False)
    html = render_report(tmp_path / "r").read_text()
    assert 'data-build="trt-int8"' in html and "No build has both accuracy and latency" in html


def test_cli_open_uses_the_file_uri(tmp_path, gated_run, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda uri: opened.append(uri) or True)
    out = tmp_path / "o.html"
    assert main(["report", str(gated_run), "--out", str(out), "--open"]) == 0
    assert opened == [out.resolve().as_uri()]


def test_cli_open_without_a_browser_says_so(tmp_path, gated_run, monkeypatch, capsys):
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda uri: False)
    out = tmp_path / "o.html"
    assert main(["report", str(gated_run), "--out", str(out), "--open"]) == 0
    assert f"open {out.resolve().as_uri()} yourself" in capsys.readouterr().out


def test_class_shift_at_equal_accuracy_is_named_in_the_notes(tmp_path):
    from tests.run_fixtures import paired_run

    labels = np.array([0] * 100 + [1] * 100)
    base, cand = labels.copy(), labels.copy()
    base[100:110] = 0  # the reference misses 10 of class 1
    cand[:10] = 1  # the candidate gets those right but adds 10 false positives of class 1
    paired_run(tmp_path / "r", labels, base, cand)
    html = render_report(tmp_path / "r").read_text(encoding="utf-8")
    assert "false positives 0 -&gt; 10 (+10)" in html and "recall 100.0% -&gt; 90.0%" in html
    assert "KL</th>" in html and "max |Δp|" in html


def test_gpu_builds_name_their_kernels_and_the_tensorrt_caveat(tmp_path):
    from workbench.results.records import save_run

    run_dir = tmp_path / "gpu-run"
    make_demo_run(run_dir)
    run = load_run(run_dir)
    gpu = "cuda:NVIDIA H200"
    builds = [
        dataclasses.replace(b, device=gpu, kernels="ONNX Runtime CUDA")
        if b.name == "ort-int8-static"
        else b
        for b in run.builds
    ]
    save_run(dataclasses.replace(run, builds=builds), run_dir)
    table = _section(render_report(run_dir).read_text(encoding="utf-8"), "summary")
    row = _text(re.search(r'data-build="ort-int8-static">(.*?)</tr>', table, re.S).group(1))
    assert f"{gpu} · kernels: ONNX Runtime CUDA" in row
    note = _text(re.search(r'<p[^>]*id="kernels-note".*?</p>', table, re.S).group(0))
    assert "TensorRT may be faster or slower than what was measured here" in note
