"""The report in a real headless Chromium: verdict and table render, no console errors, an
untrusted ``<script>`` sample shows as text without running, error bars sit inside the plot,
the gate's latency shape is shown, and CJK/emoji text renders as glyphs."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.run_fixtures import XSS_TEXT
from workbench.report import render_report

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")
FONT_PACKAGES = ("fonts-noto-cjk", "fonts-noto-color-emoji")


def _has_font(pattern: str) -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    out = subprocess.run([fc_list, pattern, "family"], capture_output=True, text=True, check=False)
    return bool(out.stdout.strip())


FONTS_READY = _has_font(":lang=zh") and _has_font(":family=Noto Color Emoji")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (extra: dev)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def loaded(browser, gated_run: Path, tmp_path_factory: pytest.TempPathFactory):
    path = render_report(gated_run, out=tmp_path_factory.mktemp("browser") / "report.html")
    browser.get(path.resolve().as_uri())
    return browser


def test_verdict_table_and_no_console_errors(loaded, tmp_path):
    from selenium.webdriver.common.by import By

    verdict = loaded.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-verdict") == "pass"
    assert "Gate PASSED" in verdict.text and verdict.is_displayed()
    rows = loaded.find_elements(By.CSS_SELECTOR, "#summary-table tbody tr")
    assert [r.get_attribute("data-build") for r in rows] == [
        "pytorch-fp32",
        "ort-fp32",
        "ort-int8-static",
        "ort-int8-dynamic",
    ]
    images = loaded.find_elements(By.CSS_SELECTOR, "img.chart")
    assert images and all(
        loaded.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        for img in images
    ), "a chart did not decode"
    logs = loaded.get_log("browser")
    assert [e for e in logs if e["level"] in ("SEVERE", "WARNING")] == []
    height = loaded.execute_script("return document.body.scrollHeight")
    loaded.set_window_size(1280, min(int(height) + 80, 12000))
    shot = tmp_path / "report.png"
    assert loaded.save_screenshot(str(shot)) and shot.stat().st_size > 20_000


def test_script_in_sample_text_is_shown_not_run(loaded):
    from selenium.webdriver.common.by import By

    assert loaded.execute_script("return window.__xss === undefined")
    assert loaded.title.startswith("workbench report")
    assert loaded.execute_script("return document.scripts.length") == 0
    loaded.execute_script(
        "document.querySelectorAll('details').forEach(d => d.open = true)"
    )  # show every build's samples
    cells = loaded.find_elements(By.CSS_SELECTOR, "#samples td.text")
    assert any(c.text == XSS_TEXT for c in cells)


@pytest.fixture(scope="module")
def demo_page(browser, demo_gated_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """The realistic demo run's report, gated with the shipped policy (latency at batch 8)."""
    path = render_report(demo_gated_run, out=tmp_path_factory.mktemp("demo") / "report.html")
    browser.get(path.resolve().as_uri())
    return browser


# Puts the scatter's SVG inline (a copy, appended to the page) so its geometry can be measured:
# returns the plot area's and every interval's box in page pixels.
_SCATTER_BOXES = """
const img = document.getElementById('scatter');
const svgText = atob(img.src.split(',')[1]);
const doc = new DOMParser().parseFromString(svgText, 'image/svg+xml');
const holder = document.createElement('div');
holder.style.cssText = 'position:absolute;left:0;top:0;width:900px';
holder.appendChild(document.importNode(doc.documentElement, true));
document.body.appendChild(holder);
const box = el => {
  const r = el.getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom];
};
const out = {area: box(holder.querySelector('#plot-area')), y: [], x: []};
holder.querySelectorAll('g[id^="ci-y-"]').forEach(g => out.y.push(box(g)));
holder.querySelectorAll('g[id^="ci-x-"]').forEach(g => out.x.push(box(g)));
out.labels = [...holder.querySelectorAll('g[id^="label-"]')].map(box);
holder.remove();
return out;
"""


def test_error_bars_drawn_inside_the_plot(demo_page):
    boxes = demo_page.execute_script(_SCATTER_BOXES)
    left, top, right, bottom = boxes["area"]
    assert len(boxes["y"]) == 4 and len(boxes["x"]) == 4
    for x0, y0, x1, y1 in boxes["y"]:
        assert y1 - y0 > 40, "a 95% CI at n=400 (about ±4 points) should be tall"
        assert top - 0.5 <= y0 and y1 <= bottom + 0.5, "the y-range is tighter than a CI"
        assert left <= x0 and x1 <= right
    assert all(x1 - x0 > 0 for x0, _, x1, _ in boxes["x"])


def test_scatter_labels_do_not_collide(demo_page):
    """Every build's name label sits inside the plot and overlaps no other label."""
    boxes = demo_page.execute_script(_SCATTER_BOXES)
    left, top, right, bottom = boxes["area"]
    labels = boxes["labels"]
    assert len(labels) == 4
    for i, (x0, y0, x1, y1) in enumerate(labels):
        assert left - 1 <= x0 and x1 <= right + 1 and top - 1 <= y0 and y1 <= bottom + 1
        for a0, b0, a1, b1 in labels[i + 1 :]:
            assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0, "two labels overlap"


def test_gate_shape_is_shown(demo_page):
    from selenium.webdriver.common.by import By

    banner = demo_page.find_element(By.ID, "gate-latency")
    assert banner.is_displayed() and "Latency judged at batch 8 × seq 128" in banner.text
    assert re.search(r"×0\.97, 95% CI \[×0\.9\d, ×\d\.\d\d\]", banner.text)
    rows = demo_page.find_elements(By.CSS_SELECTOR, "#latency-table tr[data-gate]")
    assert [r.get_attribute("data-shape") for r in rows] == ["8x128"] * 4
    badge = rows[0].find_element(By.CSS_SELECTOR, ".badge.gate")
    assert badge.is_displayed() and badge.text == "gate"
    caption = demo_page.find_element(By.CSS_SELECTOR, "#summary p.muted").text
    assert "batch 8 × seq 128, the shape the gate judged" in caption
    assert demo_page.find_element(By.ID, "latency-noise").find_elements(By.TAG_NAME, "li")


# Right edges of the summary's gate columns (× ORT FP32 cells and header), the viewport width,
# and the summary table wrapper's scroll and client widths.
_GATE_COLUMNS = """
const table = document.getElementById('summary-table');
const head = table.querySelector('th[data-gate-column]');
const col = [...head.parentNode.children].indexOf(head);
const cells = [head, ...[...table.querySelectorAll('tbody tr')].map(r => r.children[col])];
const wrap = table.closest('.table-wrap');
return {right: Math.max(...cells.map(c => c.getBoundingClientRect().right)),
        viewport: document.documentElement.clientWidth,
        page: document.documentElement.scrollWidth,
        scroll: wrap.scrollWidth, client: wrap.clientWidth, title: head.textContent};
"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_gate_columns_visible_without_scrolling(demo_page, width, tmp_path):
    """The summary's × ORT FP32 column (the one the gate judges) is on screen at 1280 px and
    1920 px: no horizontal scroll of the table or the page. Screenshots land in tmp_path."""
    demo_page.set_window_size(width, 1000)
    demo_page.execute_script("window.scrollTo(0, 0)")
    got = demo_page.execute_script(_GATE_COLUMNS)
    assert got["title"] == "× ORT FP32"
    assert got["right"] <= got["viewport"], f"gate column ends at {got['right']} px"
    assert got["scroll"] <= got["client"], "the summary table scrolls horizontally"
    assert got["page"] <= got["viewport"], "the page scrolls horizontally"
    height = demo_page.execute_script("return document.body.scrollHeight")
    demo_page.set_window_size(width, min(int(height) + 80, 12000))
    shot = tmp_path / f"report-{width}.png"
    assert demo_page.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    demo_page.set_window_size(1280, 1000)


def _glyph(driver, cell, text: str):
    """Pixels of ``text`` where it sits inside ``cell`` (a table cell of the report)."""
    from PIL import Image

    rect = driver.execute_script(
        """const [cell, text] = arguments;
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
          const i = n.textContent.indexOf(text);
          if (i < 0) continue;
          const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + text.length);
          const b = r.getBoundingClientRect(), c = cell.getBoundingClientRect();
          return [b.left - c.left, b.top - c.top, b.right - c.left, b.bottom - c.top];
        }
        return null;""",
        cell,
        text,
    )
    assert rect, f"{text!r} not found in the cell"
    image = Image.open(io.BytesIO(cell.screenshot_as_png)).convert("RGB")
    return np.asarray(image.crop(tuple(round(v) for v in rect)), dtype=np.int16)


def _is_glyph(pixels: np.ndarray, font_px: float) -> bool:
    """A CJK character drawn from a CJK font: a full-width advance (a missing-glyph box is
    about half as wide) with ink in its middle (a box's middle is empty)."""
    h, w = pixels.shape[:2]
    middle = pixels[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
    return w >= 0.85 * font_px and bool(np.any(middle.min(axis=2) < 160))


def test_cjk_and_emoji_render_as_glyphs_not_boxes(demo_page):
    """Needs fonts-noto-cjk and fonts-noto-color-emoji (skips naming them when absent)."""
    from selenium.webdriver.common.by import By

    if not FONTS_READY:
        pytest.skip(f"CJK/emoji fonts missing (apt-get install -y {' '.join(FONT_PACKAGES)})")
    demo_page.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    cell = next(
        c
        for c in demo_page.find_elements(By.CSS_SELECTOR, "#samples td.text")
        if "这部电影很好看" in c.text
    )
    demo_page.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    font_px = float(cell.value_of_css_property("font-size").removesuffix("px"))
    for ch in "电影看":
        assert _is_glyph(_glyph(demo_page, cell, ch), font_px), f"{ch} drawn as a box"
    emoji = _glyph(demo_page, cell, "🍿")
    colourful = int(np.sum(emoji.max(axis=2) - emoji.min(axis=2) > 60))
    assert colourful > 10, "emoji drawn without a colour emoji font"


def test_clustered_builds_get_separate_labels(browser, tmp_path):
    """The demo's shape of trouble: three ORT builds within 3% latency and 0.2 points of each
    other beside a 924 ms PyTorch build; their labels must not overlap."""
    from workbench.report import charts

    acc = [0.7679, 0.7695, 0.7679, 0.7687]
    uri = charts.accuracy_latency_scatter(
        ["torch-fp32", "ort-fp32", "ort-int8-static", "ort-int8-dynamic"],
        [924.0, 25.0, 24.6, 25.3],
        acc,
        "batch 8 × seq 128",
        [(a - 0.016, a + 0.016) for a in acc],
        [(900.0, 950.0), (24.5, 25.5), (24.0, 25.1), (24.8, 25.9)],
    )
    page = tmp_path / "scatter.html"
    page.write_text(f'<!DOCTYPE html><img id="scatter" src="{uri}">', encoding="utf-8")
    browser.get(page.as_uri())
    labels = browser.execute_script(_SCATTER_BOXES)["labels"]
    assert len(labels) == 4
    for i, (x0, y0, x1, y1) in enumerate(labels):
        for a0, b0, a1, b1 in labels[i + 1 :]:
            assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0, "two labels overlap"
