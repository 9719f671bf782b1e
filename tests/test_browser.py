"""The dashboard in a real headless browser (Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(script: str = str(ROOT / "dashboard" / "app.py"), *, cwd=None, env: dict | None = None) -> Iterator[str]:
    """The dashboard served on 127.0.0.1 on a free port, from `cwd` (by default a folder other than
    the repository root, so the shipped config is not read), until the block ends: its URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", script,
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]
    process = subprocess.Popen(command, cwd=cwd or "/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=None if env is None else {**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the dashboard did not start within 120 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server():
    """The dashboard served on 127.0.0.1 only, from a folder other than the repository root."""
    with serving() as url:
        yield url


@pytest.fixture
def page(server):
    """A headless Chromium page with the Explore page loaded and its maps computed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1500})
            tab.goto(server)
            tab.get_by_text("Maps explain the class").wait_for(timeout=240_000)
            compute = tab.get_by_role("button", name="Compute")  # a slow machine's estimate asks first
            if compute.count():
                compute.first.click()
            yield tab
        finally:
            browser.close()


def screenshot(page, tmp_path, name: str) -> None:
    """Saves a screenshot under the test's folder (and where SCREENSHOT_TO says, for the README)."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SCREENSHOT_TO"):
        page.screenshot(path=os.environ["SCREENSHOT_TO"].replace(".png", f"_{name}.png"), full_page=True)


def test_explore_page_in_a_real_browser(page, tmp_path):
    text = page.inner_text("body")
    assert "Top-5 predictions" in text and "cat" in text
    # The top-5 chart and one overlay for each of the five default methods.
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
    assert "Traceback" not in page.inner_text("body")
    screenshot(page, tmp_path, "explore")


def test_pick_a_sample_then_occlude_live_in_a_real_browser(page, tmp_path):
    """Pick a sample in the sidebar, open Occlusion, move the slider: the prediction moves."""
    sample = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Sample image")
    sample.click()
    page.keyboard.type("coffee")
    page.keyboard.press("Enter")
    page.get_by_text("Maps explain the class espresso").wait_for(timeout=240_000)
    page.get_by_role("link", name="Occlusion, live").click()
    metric = page.locator('[data-testid="stMetricValue"]').first
    metric.wait_for(timeout=240_000)
    page.get_by_text("Probability of espresso").first.wait_for(timeout=60_000)  # the sample came along
    before = metric.inner_text()
    page.locator('[data-testid="stSlider"]').filter(has_text="Pixels hidden").get_by_role("slider").focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([before]) => { const m = document.querySelector('[data-testid=stMetricValue]');"
        " return m && m.innerText !== before; }", arg=[before], timeout=120_000,
    )
    assert metric.inner_text() != before and "%" in metric.inner_text()
    assert "Traceback" not in page.inner_text("body")
    screenshot(page, tmp_path, "occlusion")


def test_cancel_stops_a_run_keeps_nothing_and_does_not_start_it_again(page, tmp_path):
    """A map estimated at about 5 s starts by itself with a Cancel button; pressing Cancel stops
    it, keeps nothing, says so, and does not start it again by itself: the Compute button is
    back and no progress bar or Cancel button follows."""
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=240_000)
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    pass_ms = float(re.search(r"one forward \+ backward pass ≈ (\d+) ms", sidebar).group(1))
    samples = max(30, round(5000 / pass_ms))  # SmoothGrad costs about one pass per sample: about 5 s
    page.get_by_role("button", name="SmoothGrad", exact=True).click()
    page.get_by_text("SmoothGrad settings").click()
    box = page.locator('[data-testid="stNumberInput"]').filter(has_text="samples").locator("input")
    box.fill(str(samples))
    box.press("Enter")
    cancel = page.get_by_role("button", name="Cancel")
    cancel.wait_for(timeout=60_000)
    cancel.click()
    page.get_by_text("Cancelled: nothing of that run was kept").wait_for(timeout=120_000)
    page.wait_for_timeout(3000)  # a run started again would show its bar and button by now
    assert page.get_by_text("Not computed yet: SmoothGrad").count() == 1
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert page.get_by_role("button", name="Compute").count() == 1
    assert page.locator('[data-testid="stProgress"]').count() == 0
    assert "Traceback" not in page.inner_text("body")
    screenshot(page, tmp_path, "cancelled")
