"""The "Occlusion, live" page under Streamlit's AppTest: it loads, the slider and fill move the
answer with one forward pass and no new maps, the which-way view and the hand-drawn box work."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import engines
from dashboard import state
from helpers import on_shapes_star

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "occlusion.py")
TIMEOUT = 300  # the first run imports torch and loads the model


def probability(at: AppTest) -> str:
    """The target's probability after the slider's occlusion, as the page shows it."""
    return next(m.value for m in at.metric if m.label.startswith("Probability of") and "box" not in m.label)


def box_probability(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label.endswith("box hidden"))


def captions(at: AppTest) -> list[str]:
    return [c for image in at.get("image") for c in image.captions]


def counting(monkeypatch, name: str) -> list[int]:
    """Replaces `engines.<name>` by a wrapper that records each call (the page looks it up there)."""
    calls: list[int] = []
    original = getattr(engines, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engines, name, wrapper)
    return calls


@pytest.fixture
def shapes() -> AppTest:
    """The page on the small shapes model and a star, where everything takes milliseconds."""
    at = on_shapes_star(PAGE, TIMEOUT)
    assert not at.error, at.error
    return at


def test_the_page_loads_on_the_default_sample_with_curves_images_and_the_box():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert at.selectbox(key=state.OCC_METHOD).value == "positive"
    assert probability(at).endswith("%") and box_probability(at).endswith("%")
    assert len(at.get("plotly_chart")) == 4  # top 5, the two curve charts, the box picker
    assert len(at.get("image")) == 1 + 4 + 1  # the live occlusion, which way, the box


def test_moving_the_fraction_slider_changes_the_shown_probability(shapes):
    before = probability(shapes)
    shapes.slider(key=state.OCC_PERCENT).set_value(40).run()
    assert not shapes.exception and not shapes.error
    assert probability(shapes) != before


def test_changing_the_fill_changes_the_shown_probability(shapes):
    shapes.slider(key=state.OCC_PERCENT).set_value(30).run()
    black = probability(shapes)
    shapes.selectbox(key=state.OCC_FILL).set_value("white").run()
    assert not shapes.exception and not shapes.error
    assert probability(shapes) != black
    shapes.selectbox(key=state.OCC_FILL).set_value("darker").run()  # brings its step slider
    shapes.slider(key=state.OCC_STEP).set_value(0.5).run()
    assert not shapes.exception and not shapes.error


def test_a_slider_move_recomputes_no_map_and_runs_one_occlusion(shapes, monkeypatch):
    explained, occluded = counting(monkeypatch, "explain_many"), counting(monkeypatch, "occlude")
    shapes.toggle(key=state.OCC_WHICH_WAY).set_value(False).run()
    occluded.clear()
    shapes.slider(key=state.OCC_PERCENT).set_value(25).run()
    assert not shapes.exception
    assert explained == [] and len(occluded) == 1
    shapes.toggle(key=state.OCC_WHICH_WAY).set_value(True).run()
    occluded.clear()
    shapes.slider(key=state.OCC_PERCENT).set_value(35).run()
    assert explained == [] and len(occluded) == 1 + 4  # the live view and the four which-way images
    from dashboard import resources

    resources._map_store.clear()  # maps are shared server-wide: other tests may have made this one
    shapes.selectbox(key=state.OCC_METHOD).set_value("integrated_gradients").run()
    assert explained  # the counter does see a new map being computed


def test_the_which_way_view_shows_four_occlusions(shapes):
    shown = captions(shapes)
    for name in ("positive", "negative"):
        for fill in ("black", "white"):
            assert f"{name} pixels → {fill}" in shown
    assert sum("P(star)" in m.value for m in shapes.markdown) == 4


def test_a_signed_map_can_rank_by_value_or_by_magnitude(shapes):
    shapes.selectbox(key=state.OCC_METHOD).set_value("gradient_x_input").run()
    shapes.slider(key=state.OCC_PERCENT).set_value(20).run()
    by_value = probability(shapes)
    shapes.radio(key=state.OCC_RANKING).set_value("magnitude").run()
    assert not shapes.exception and not shapes.error
    assert probability(shapes) != by_value


def test_a_box_typed_into_the_inputs_changes_the_probability(shapes):
    before = box_probability(shapes)
    for key, value in zip(state.OCC_BOX_ROWS + state.OCC_BOX_COLS, (0, 64, 0, 64)):
        shapes.number_input(key=key).set_value(value)
    shapes.run()
    assert not shapes.exception and not shapes.error
    assert box_probability(shapes) != before


def test_an_empty_box_says_what_to_do_instead_of_failing(shapes):
    shapes.number_input(key=state.OCC_BOX_ROWS[0]).set_value(40)
    shapes.number_input(key=state.OCC_BOX_ROWS[1]).set_value(10).run()
    assert not shapes.exception
    assert any("The box is empty" in e.value and "drag a box" in e.value for e in shapes.error)


def test_a_dragged_box_becomes_pixel_bounds():
    from dashboard import views

    assert views.box_from_ranges((-3.0, 9.4), (20.6, 4.2), 64, 64) == (5, 21, 0, 10)
    assert views.box_from_ranges((10.1, 10.3), (70.0, 80.0), 64, 64) == (63, 64, 10, 11)
