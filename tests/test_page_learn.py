"""The Learn page (dashboard/app_pages/learn.py) under Streamlit's AppTest: every step of the tour
loads on its preset example and shows its maps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "learn.py")
TIMEOUT = 300  # the first run imports torch and loads EfficientNet-Lite0
CHARTS = (3, 3, 4, 3)  # maps per step (step 3 adds the response curve)


@pytest.fixture(scope="module")
def tour():
    """The page run once per step, in order, in one session: `{step index: AppTest}` snapshots of
    what each step showed (one session, so the models and maps load once)."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    shown = {}
    for index in range(len(CHARTS)):
        if index:
            picker = at.radio(key=state.LEARN_STEP)
            at = picker.set_value(picker.options[index]).run()
        shown[index] = {
            "exceptions": [e.value for e in at.exception],
            "errors": [e.value for e in at.error],
            "charts": len(at.get("plotly_chart")),
            "metrics": {m.label: m.value for m in at.metric},
            "captions": [c.value for c in at.caption],
            "markdown": " ".join(m.value for m in at.markdown),
            "opacity": at.session_state[state.LEARN_OPACITY],
        }
    return shown


@pytest.mark.parametrize("index", range(len(CHARTS)))
def test_every_step_loads_and_shows_its_maps(tour, index):
    shown = tour[index]
    assert shown["exceptions"] == [] and shown["errors"] == []
    assert shown["charts"] == CHARTS[index]


def test_step_three_shows_a_blank_gradient_beside_a_secant_that_finds_the_square(tour):
    metrics = tour[2]["metrics"]
    gradient = float(metrics["Gradient: largest value"])
    secant = float(metrics["Secant: largest value"])
    nonlinearity = float(metrics["Nonlinearity: largest value"])
    assert gradient < 1e-6 and secant > 1e-3 and nonlinearity > 1e-3
    assert sum("our nonlinear family, after Rosenzweig et al." in c for c in tour[2]["captions"]) == 2
    assert any("Tangent slope 0" in caption for caption in tour[2]["captions"])


def test_step_four_scores_each_map_against_the_object_mask(tour):
    metrics = tour[3]["metrics"]
    masses = {label: value for label, value in metrics.items() if label.endswith(": relevance mass")}
    assert len(masses) == 3
    for value in masses.values():
        assert value == "n/a" or 0.0 <= float(value) <= 1.0
    assert sum(caption.startswith("Pointing game") for caption in tour[3]["captions"]) == 3


def test_a_smaller_step_on_the_plateau_leaves_the_secant_blind_too():
    """With ε = 0.01 the darkened square stays above the detector's knee: the secant is 0 as well."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state[state.LEARN_STEP] = "3 · When the gradient is blind"
    at.session_state[state.LEARN_EPSILON] = 0.01
    at.run()
    assert not at.exception
    metrics = {m.label: float(m.value) for m in at.metric}
    assert math.isclose(metrics["Secant: largest value"], 0.0, abs_tol=1e-9)


def test_the_tour_starts_at_the_dashboards_default_opacity(tour):
    """The same opacity as the Explore page's overlays, which leaves the image visible."""
    assert tour[0]["opacity"] == state.DEFAULTS[state.OPACITY] < 0.75
