"""What makes the report honest: the gate's latency shape, speed-up intervals, noise warnings,
accuracy error bars, and small text defects (code spans, integers, model paths)."""

from __future__ import annotations

import base64
import re
import shutil
from html import unescape

import numpy as np

from tests.report.conftest import MULTILINGUAL
from workbench.report import render_report
from workbench.results.records import load_run, save_record


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _section(html: str, section_id: str) -> str:
    m = re.search(rf'<section id="{section_id}".*?</section>', html, re.S)
    assert m, f"section {section_id} missing"
    return m.group(0)


def test_verdict_names_the_gate_shape_and_the_speedup_interval(demo_report_html):
    verdict = _text(_section(demo_report_html, "verdict"))
    assert "Gate FAILED" in verdict
    assert "Latency judged at batch 8 × seq 128" in verdict
    # ort-fp32 31.0 ms vs ort-int8-static 31.8 ms at batch 8: ×0.97 with an interval around it
    m = re.search(r"×0\.97, 95% CI \[×(\d\.\d\d), ×(\d\.\d\d)\]", verdict)
    assert m and float(m.group(1)) < 0.975 < float(m.group(2))


def test_summary_uses_the_gate_shape_and_lists_every_shape(demo_report_html):
    summary = _section(demo_report_html, "summary")
    caption = _text(summary.split("<table", 1)[0])
    assert re.search(r"Latency at batch 8 × seq 128 ?, the shape the gate judged", caption)
    assert "every measured shape (1×128, 8×128)" in caption
    row = _text(re.search(r'data-build="ort-int8-dynamic">(.*?)</tr>', summary, re.S).group(1))
    assert "19.50" in row  # p50 at batch 8, not batch 1's 3.80
    m = re.search(r"1\.59× \[(\d\.\d\d), (\d\.\d\d)\]", row)  # 31.0 / 19.5 vs ORT FP32
    assert m and float(m.group(1)) < 1.59 < float(m.group(2))


def test_latency_table_marks_the_gate_rows_and_flags_noise(demo_report_html):
    lat = _section(demo_report_html, "latency")
    gate_rows = re.findall(r'<tr class="gate[^"]*" data-shape="(\d+x\d+)" data-gate="true">', lat)
    assert gate_rows == ["8x128"] * 4
    assert len(re.findall(r'data-shape="1x128"', lat)) == 4
    assert "batch 8 × seq 128 · judged by the gate" in _svg_text(lat)
    noise = _text(re.search(r'<div id="latency-noise">.*?</div>\s*</div>', lat, re.S).group(0))
    assert "Latency too noisy to trust in 1 record" in noise
    assert "pytorch-fp32 at batch 1 × seq 128" in noise and "load changed" in noise
    summary = _section(demo_report_html, "summary")
    assert 'href="#latency-noise"' not in summary  # the noisy record is batch 1; summary is batch 8


def _svg_text(html: str) -> str:
    """Text inside every embedded SVG chart."""
    out = []
    for uri in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html):
        out.append(base64.b64decode(uri).decode())
    return "\n".join(out)


def test_scatter_has_error_bars_and_a_y_range_no_tighter_than_them(demo_report_html):
    trade = _section(demo_report_html, "tradeoff")
    svg = _svg_text(trade)
    for i in range(4):
        assert f'id="ci-y-{i}"' in svg and f'id="ci-x-{i}"' in svg
    assert "batch 8 × seq 128 (the gate's shape)" in svg
    assert "ort-int8-static (dominated)" in svg and "ort-int8-dynamic (dominated)" not in svg
    y_ticks = [
        float(t) for t in re.findall(r'id="ytick_\d+">.*?<text[^>]*>([^<]+)</text>', svg, re.S)
    ]
    assert len(y_ticks) >= 3, "no y tick labels found in the scatter"
    assert max(y_ticks) - min(y_ticks) >= 6  # Wilson CIs at n=400 span about ±4 points
    assert "95% Wilson interval" in _text(trade)


def test_notes_render_code_and_no_backticks(demo_report_html):
    notes = _section(demo_report_html, "notes")
    assert "<code>--per-tensor</code> trades some accuracy" in notes
    assert "`" not in _text(notes)
    assert "`" not in _text(_section(demo_report_html, "verdict"))


def test_model_paths_are_all_absolute(demo_report_html, demo_gated_run):
    prov = _section(demo_report_html, "provenance")
    models = re.search(r"<h3>Models</h3>(.*?)</dl>", prov, re.S).group(1)
    paths = [p.split(" · ", 1)[1] for p in re.findall(r'<dd class="mono">(.*?)</dd>', models)]
    assert len(paths) == 4 and all(p.startswith("/") for p in paths)
    static = str(demo_gated_run.resolve() / "models" / "int8-static-qdq.onnx")
    assert static in paths
    assert load_run(demo_gated_run).build("ort-int8-static").model_path.startswith("reports")


def test_multilingual_text_is_kept(demo_report_html):
    samples = _text(_section(demo_report_html, "samples"))
    assert sum(samples.count(t) for t in MULTILINGUAL) >= 3


def test_large_counts_print_as_integers(tmp_path, demo_gated_run):
    from workbench.data.representativeness import TextProfile, assess

    run = tmp_path / "run"
    shutil.copytree(demo_gated_run, run)
    rng = np.random.default_rng(0)
    rep = assess(
        TextProfile(rng.integers(5, 60, 512), rng.integers(0, 2, 512)),
        TextProfile(rng.integers(5, 80, 2551), rng.integers(0, 2, 2551)),
        max_length=128,
        label_names=["rotten", "fresh"],
        target_name="test split",
        calibration_set="calibration_sets/rt-512",
    )
    save_record(rep, run / "calibset_report.json")
    cs = _text(_section(render_report(run).read_text(), "calibset"))
    assert "2551" in cs and not re.search(r"\de\+\d", cs)
