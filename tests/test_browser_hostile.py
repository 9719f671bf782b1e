"""Hostile input through a real browser: a file-reading model uploaded in the sidebar is refused
with its reason, and a crafted link leaves the page working and says what it ignored.

The server is started as the README says, from the repository root, so the shipped
`.streamlit/config.toml` (127.0.0.1, 25 MB uploads, no error details) is the one in force.
"""

from __future__ import annotations

import io
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, ROOT, screenshot, serving

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def server():
    """The README's command, from the repository root, on a free port."""
    with serving("dashboard/app.py", cwd=ROOT) as url:
        yield url


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Reader(nn.Module):
    """The issue's attack: a scripted forward that reads a server file into its logits."""

    def __init__(self):
        super().__init__()
        self.path = "/etc/hostname"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leak = torch.from_file(self.path, shared=False, size=3, dtype=torch.uint8).float()
        return x.mean(dim=(2, 3)) * 0 + leak


def _reader_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Reader()), buffer)
    return buffer.getvalue()


@pytest.mark.timeout(420)
def test_a_file_reading_model_uploaded_in_the_page_is_refused_with_its_reason(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(f"{server}/?model=shapes_cnn&sample=shapes_star&methods=gradient")
    page.get_by_text("Maps explain the class").wait_for(timeout=240_000)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Use your own model").click()
    sidebar.get_by_text("TorchScript (checked before it runs)").click()
    sidebar.get_by_text("Input size (pixels)").wait_for(timeout=60_000)  # the form for TorchScript is up
    model = sidebar.locator('[data-testid="stFileUploader"]').filter(has_text="Model file")
    model.locator('input[type="file"]').set_input_files(
        {"name": "reader.pt", "mimeType": "application/octet-stream", "buffer": _reader_bytes()})
    classes = sidebar.locator('[data-testid="stFileUploader"]').filter(has_text="Class names")
    classes.locator('input[type="file"]').set_input_files(
        {"name": "classes.txt", "mimeType": "text/plain", "buffer": b"a\nb\nc\n"})
    load = sidebar.get_by_role("button", name="Load my model")
    page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                           "b => b.innerText.includes('Load my model') && !b.disabled)", timeout=60_000)
    load.click()
    error = sidebar.locator('[data-testid="stAlert"]').filter(has_text="refused before running")
    error.wait_for(timeout=120_000)
    text = error.inner_text()
    assert "aten::from_file" in text and "maps a file on the server" in text
    body = page.inner_text("body")
    assert "Traceback" not in body and "Maps explain the class" in body  # the page goes on
    page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=120_000)
    screenshot(page, tmp_path, "refused_model")
    page.close()


@pytest.mark.timeout(300)
def test_a_crafted_link_says_what_it_ignored_and_shows_no_traceback(server, browser, tmp_path):
    query = urllib.parse.urlencode({
        "model": "shapes_cnn", "sample": "shapes_star", "target": "٣", "methods": "gradient,evil",
        "settings": '{"integrated_gradients":{"steps":1e999}}',
    })
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(f"{server}/?{query}")
    page.get_by_text("Maps explain the class").wait_for(timeout=240_000)
    warning = page.locator('[data-testid="stAlert"]').filter(has_text="Parts of this link")
    warning.wait_for(timeout=60_000)
    text = warning.inner_text()
    assert "target “٣” (not a class number)" in text and "method “evil” (unknown)" in text
    assert "1e999 is not a finite number" in text
    assert "Traceback" not in page.inner_text("body")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=120_000)
    page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=120_000)
    screenshot(page, tmp_path, "crafted_link")
    page.close()
