"""The Data set page in a real headless browser (Debian's Chromium, Playwright), on an audit made here."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_FLAGS, screenshot, serving

from engines.audit import run as audit
from engines.audit.reader import AUDITS_VARIABLE
from engines.cli import shapes_test_set

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard on 127.0.0.1 with its audits root holding one audit of 16 shapes images."""
    root = tmp_path_factory.mktemp("audits")
    images = tmp_path_factory.mktemp("images")
    shapes_test_set.main([str(images), "--count", "16"])
    assert audit.main([str(images), "--model", "shapes_cnn", "--device", "cpu", "--methods", "gradient,occlusion",
                       "--curve-steps", "8", "--workers", "0", "--out", str(root / "shapes")]) == 0
    with serving(env={AUDITS_VARIABLE: str(root)}) as url:
        yield url


def test_the_data_set_page_shows_summary_distributions_extremes_and_clusters(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1600})
            tab.goto(f"{server}/dataset")
            tab.get_by_role("button", name="Download this page as HTML").first.wait_for(timeout=240_000)
            tab.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
            text = tab.inner_text("body")
            assert "Summary per method" in text and "Most faithful" in text and "Cluster 1" in text
            assert "Traceback" not in text and not tab.locator('[data-testid="stException"]').count()
            screenshot(tab, tmp_path, "dataset")
            for heading, name in (("Most and least faithful maps", "dataset_extremes"),
                                  ("Maps clustered by similarity, per class", "dataset_clusters")):
                tab.get_by_role("heading", name=heading).scroll_into_view_if_needed()
                tab.wait_for_timeout(500)
                screenshot(tab, tmp_path, name)
        finally:
            browser.close()
