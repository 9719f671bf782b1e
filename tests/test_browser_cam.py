"""The CAM and surrogate maps in a real headless browser, opened from a link."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from test_browser import CHROMIUM, CHROMIUM_FLAGS, pytestmark, screenshot, server  # noqa: F401


def test_a_link_with_cam_and_surrogate_maps_draws_them_with_the_layer_picker(server, tmp_path):  # noqa: F811
    """A link naming Grad-CAM on another layer, Score-CAM and LIME draws their maps, and the
    Grad-CAM settings offer the model's layers by name and output size."""
    from playwright.sync_api import sync_playwright

    query = urlencode({
        "model": "shapes_cnn", "sample": "shapes_star", "methods": "grad_cam,score_cam,lime",
        "settings": json.dumps({"grad_cam": {"layer": "net.features.3"}, "lime": {"samples": 100}}),
    })
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1800})
            tab.goto(f"{server}/?{query}")
            tab.get_by_text("Maps explain the class star").wait_for(timeout=240_000)
            compute = tab.get_by_role("button", name="Compute")
            if compute.count():
                compute.first.click()
            tab.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=120_000)
            tab.get_by_text("Grad-CAM settings").click()
            picker = tab.locator('[data-testid="stSelectbox"]').filter(has_text="convolutional layers")
            picker.first.wait_for(timeout=30_000)
            screenshot(tab, tmp_path, "explore_cam")
            assert "net.features.3 (Sequential, 64 × 16 × 16)" in picker.first.inner_html()  # the chosen layer
            body = tab.inner_text("body")
            assert "Traceback" not in body and "cannot run" not in body
            assert "Score-CAM" in body and "LIME" in body
        finally:
            browser.close()
