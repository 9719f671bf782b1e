"""The Probe page under AppTest: a region's response curve against its tangent, and the
nonlinearity map beside it, on the small shapes model (quick on a CPU)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import engines

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "probe.py")
TIMEOUT = 300  # the first run imports torch and loads the model


def page(model: str = "shapes_cnn", sample: str = "shapes_star", preset: dict | None = None) -> AppTest:
    """The page after its first run. The sidebar's choices are preset in session state, so the
    first run is already on this model and image (not the default ImageNet model and photo)."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model"] = model
    at.session_state["sample"] = sample
    for key, value in (preset or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def probe() -> AppTest:
    return page()


def metric(at: AppTest, label: str) -> float:
    return float(next(m.value for m in at.metric if m.label == label))


def curve_figure(at: AppTest) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(c for c in charts if any((t.get("name") or "").startswith("tangent") for t in c["data"]))


def picker_figure(at: AppTest) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(c for c in charts if any(t.get("type") == "image" for t in c["data"]))


def array(values) -> np.ndarray:
    """A trace's data as plotly serialises it: a list, or a typed array {"dtype", "bdata"}."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def trace(spec: dict, prefix: str) -> dict:
    return next(t for t in spec["data"] if (t.get("name") or "").startswith(prefix))


def trace_with_customdata(spec: dict) -> dict:
    return next(t for t in spec["data"] if t.get("type") == "scatter" and t.get("customdata"))


def outline(spec: dict) -> tuple:
    rect = next(s for s in spec["layout"]["shapes"] if s["type"] == "rect")
    return rect["x0"], rect["y0"]


def test_the_page_shows_the_map_the_curve_and_the_region_value(probe):
    assert not probe.error
    assert len(probe.get("plotly_chart")) == 2  # the region picker with its map, and the curve
    assert any(t.get("type") == "heatmap" for t in picker_figure(probe)["data"])  # a small model: map shown at once
    assert metric(probe, "Nonlinearity") >= 0
    assert "after Rosenzweig et al." in probe.caption[0].value
    assert any("Where the curve leaves the line, the gradient misleads" in m.value for m in probe.markdown)


def test_another_region_changes_the_curve_and_its_nonlinearity(probe):
    before = (metric(probe, "Nonlinearity"), array(trace(curve_figure(probe), "true score")["y"]),
              outline(picker_figure(probe)))
    probe.number_input(key="probe.row").set_value(0)
    probe.number_input(key="probe.col").set_value(0).run()
    assert not probe.exception and not probe.error
    after = (metric(probe, "Nonlinearity"), array(trace(curve_figure(probe), "true score")["y"]),
             outline(picker_figure(probe)))
    assert after[0] != before[0] and not np.allclose(after[1], before[1])
    assert after[2] == (-0.5, -0.5)  # the outline moved to the top-left region


def test_the_tangent_passes_through_the_clean_score_at_t_zero(probe):
    spec = curve_figure(probe)
    tangent, true = trace(spec, "tangent"), trace(spec, "true score")
    t, on_tangent, on_curve = array(tangent["x"]), array(tangent["y"]), array(true["y"])
    zero = int(np.flatnonzero(t == 0)[0])  # 21 steps over [-span, span]: t = 0 is sampled exactly
    clean = metric(probe, "Clean score s(x)")
    assert on_tangent[zero] == pytest.approx(on_curve[zero], abs=1e-4)
    assert on_tangent[zero] == pytest.approx(clean, abs=1e-3)  # the metric shows 3 decimals
    # ... and that is the model's logit for the target class of the unchanged image.
    model = engines.load_model("shapes_cnn", device="cpu")
    x = model.preprocess(engines.read_image(engines.sample_images()["shapes_star"]))
    logits = engines.predict(model, x).logits[0]
    assert on_tangent[zero] == pytest.approx(float(logits.max()), abs=1e-3)  # the target is the top class


def test_going_to_the_most_nonlinear_region_shows_the_largest_value(probe):
    probe.button(key="probe.jump").click().run()
    assert not probe.exception
    values = [d[2] for d in trace_with_customdata(picker_figure(probe))["customdata"]]
    row, col = probe.number_input(key="probe.row").value, probe.number_input(key="probe.col").value
    cols = max(d[1] for d in trace_with_customdata(picker_figure(probe))["customdata"]) + 1
    assert values[row * cols + col] == pytest.approx(max(values))


def test_a_coarser_patch_gives_fewer_regions_and_keeps_the_region_inside(probe):
    probe.number_input(key="probe.row").set_value(7).run()  # the last row of 8×8 regions of 8 pixels
    probe.select_slider(key="probe.patch").set_value(16).run()  # now 4×4 regions
    assert not probe.exception and not probe.error
    assert probe.number_input(key="probe.row").value == 3
    assert len(trace_with_customdata(picker_figure(probe))["customdata"]) == 16


def test_a_costly_map_waits_for_its_button_and_the_curve_still_shows():
    at = page("efficientnet_lite0", "chelsea", {"probe.patch": 4})  # 3136 regions: minutes on a CPU
    assert not at.error
    assert any("forward passes" in i.value for i in at.info)
    assert at.button(key="probe.compute").label.startswith("Compute the nonlinearity map")
    assert not any(t.get("type") == "heatmap" for t in picker_figure(at)["data"])
    assert metric(at, "Nonlinearity") >= 0
