"""Three browser sessions on one server at once: each sees its own image, prediction and maps,
and the occlusion slider of one keeps answering while the other two compute their first screens."""

from __future__ import annotations

import pytest

import engines
from test_browser import CHROMIUM, CHROMIUM_FLAGS, screenshot, server  # noqa: F401  (server is a fixture)

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed")

EXPLORING = {"chelsea": "Egyptian cat", "coffee": "espresso"}  # the sample and the model's top class
SLIDING = ("camera", "tripod")
MAPS = len(engines.FIRST_SCREEN)
ALL_FINAL = f"document.querySelectorAll('.js-plotly-plot').length >= {1 + MAPS}"


def test_three_sessions_at_once_each_get_their_own_maps_while_a_slider_moves(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            slider_tab = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
            slider_tab.goto(f"{server}/occlusion?sample={SLIDING[0]}")
            metric = slider_tab.locator('[data-testid="stMetricValue"]').first
            metric.wait_for(timeout=240_000)
            slider_tab.get_by_text(f"Probability of {SLIDING[1]}").first.wait_for(timeout=120_000)

            tabs = {}
            for sample in EXPLORING:  # both start computing their first screens now, side by side
                tab = browser.new_context(viewport={"width": 1400, "height": 2200}).new_page()
                tab.goto(f"{server}/?sample={sample}")
                tabs[sample] = tab
            for sample, tab in tabs.items():
                tab.get_by_text(f"Maps explain the class {EXPLORING[sample]}").wait_for(timeout=240_000)
                compute = tab.get_by_role("button", name="Compute")  # a busy machine's estimate asks first
                if compute.count():
                    compute.first.click()

            knob = slider_tab.locator('[data-testid="stSlider"]').filter(has_text="Pixels hidden").get_by_role("slider")
            answers, moved_while_computing = [metric.inner_text()], 0
            for _ in range(6):  # move the slider; each move must change what the slider session shows
                computing = not all(t.evaluate(ALL_FINAL) for t in tabs.values())
                knob.focus()
                for _ in range(8):
                    slider_tab.keyboard.press("ArrowRight")
                slider_tab.wait_for_function(
                    "([before]) => { const m = document.querySelector('[data-testid=stMetricValue]');"
                    " return m && m.innerText !== before; }", arg=[answers[-1]], timeout=120_000,
                )
                answers.append(metric.inner_text())
                moved_while_computing += computing
            assert moved_while_computing >= 1, "the first screens were final before the slider moved"
            assert len(set(answers)) >= 3 and all("%" in a for a in answers)
            assert f"Probability of {SLIDING[1]}" in slider_tab.inner_text("body")

            for sample, label in EXPLORING.items():
                tab = tabs[sample]
                tab.get_by_text(f"Maps explain the class {label} for sample “{sample}”").wait_for(timeout=240_000)
                tab.wait_for_function(ALL_FINAL, timeout=240_000)
                text = tab.inner_text("body")
                assert "Top-5 predictions" in text and label in text and "Traceback" not in text
                assert "refining" not in text  # every preview was swapped for its final chart
                screenshot(tab, tmp_path, f"session_{sample}")
            assert "Traceback" not in slider_tab.inner_text("body")
            screenshot(slider_tab, tmp_path, "session_slider")
        except Exception:
            for number, context in enumerate(browser.contexts):  # what each session showed, for the failure
                for tab in context.pages:
                    tab.screenshot(path=str(tmp_path / f"failed_{number}.png"), full_page=True)
            raise
        finally:
            browser.close()
