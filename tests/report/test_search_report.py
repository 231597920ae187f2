"""search.html from a search record: the verdict says why it has no selection bias, the
ranking heat map has one cell per (layer, sub-layer), and it loads cleanly in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.test_browser import browser  # noqa: F401  (the shared Chromium fixture)
from workbench.report.search import heat_map, render_search
from workbench.results.records import SCHEMA_VERSION, save_record
from workbench.results.search import SEARCH_FILE, GateCheckOnSplit, SearchRecord, TrialRecord

RANKING = [f"encoder.layer.{i}.{s}" for s in ("output.dense", "attention.self.query")
           for i in (3, 0, 1, 2)]  # fmt: skip


def _record(tmp_path: Path) -> Path:
    def trial(n_float: int, ms: float, passed: bool) -> TrialRecord:
        nodes = [f"/inner/encoder/encoder/layer.{i}/output/dense/MatMul" for i in range(n_float)]
        return TrialRecord(
            "static", "plain", [], "max", True, nodes, RANKING[:n_float], passed, 0.8, ms, "greedy"
        )

    best = trial(2, 3.0, True)
    rec = SearchRecord(
        schema_version=SCHEMA_VERSION, experiment="exp <b>x</b>", model_onnx_sha256="ab" * 32,
        ranking_kind="proxy", ranking=RANKING, n_search=200, n_gate=200, latency_shape=[1, 128],
        fp32_latency_ms=9.0, trials=[trial(0, 2.5, False), best, trial(4, 4.0, True)],
        pareto=[best], best=best,
        gate_check=GateCheckOnSplit(200, 0.8, 0.805, -0.005, 0.015, 0.985, True, [], "PASS"),
        traffic_check=None,
        exclude=["^/inner/encoder/encoder/layer\\.0/output/dense/MatMul$"], files=["exclude.toml"],
        seconds=12.0, configurations=["static max per-channel"], not_searched=[],
    )  # fmt: skip
    save_record(rec, tmp_path / SEARCH_FILE)
    return render_search(tmp_path)


def test_heat_map_places_every_ranked_layer():
    heat = heat_map(RANKING)
    assert heat["subs"] == ["attention.self.query", "output.dense"]
    assert [r["layer"] for r in heat["rows"]] == [0, 1, 2, 3]
    assert heat["rows"][3]["cells"][1] == {"rank": 0, "shade": 1.0}  # layer 3 output: worst


def test_search_report_renders_the_verdict(tmp_path):
    html = _record(tmp_path).read_text(encoding="utf-8")
    assert "no selection bias" in html and "3.00× ORT FP32" in html
    assert "exp &lt;b&gt;x&lt;/b&gt;" in html and "<script" not in html
    assert html.count("<td style=") == 8  # 4 layers x 2 sub-layers in the heat map


@pytest.mark.browser
def test_search_report_in_chromium(browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(_record(tmp_path).resolve().as_uri())
    assert "Verified: passes the gate" in browser.find_element(By.ID, "verdict").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.heat tbody tr")) == 4
    assert browser.execute_script("return document.scripts.length") == 0
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
