"""The report in a real headless Chromium: verdict and table render, no console errors, and
an untrusted ``<script>`` sample shows as text without running."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.run_fixtures import XSS_TEXT
from workbench.report import render_report

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")
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
