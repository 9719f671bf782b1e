"""The Evaluate page under AppTest: AUC table and curves, the randomisation sanity check and the
sufficiency test, on the small shapes model (quick on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engines.models.shapes import CLASSES
from engines.evaluation.sufficiency import FILLS

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "evaluate.py")
TIMEOUT = 300  # the first run imports torch and loads the model
STARTING = ["gradient", "integrated_gradients", "positive", "negative"]


@pytest.fixture
def evaluate() -> AppTest:
    """The page after its first run. The sidebar's choices are preset in session state, so the
    first run is already on the shapes model (not the default ImageNet model and photo)."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model"] = "shapes_cnn"
    at.session_state["sample"] = "shapes_star"
    at.run()
    assert not at.exception, at.exception
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titled(at: AppTest, word: str) -> list[dict]:
    return [f for f in figures(at) if word in f["layout"].get("title", {}).get("text", "")]


def auc_table(at: AppTest):
    return next(d.value for d in at.dataframe if "Deletion AUC (↓ better)" in d.value.columns)


def test_the_auc_table_has_a_row_per_method_with_values_in_unit_range(evaluate):
    assert not evaluate.error
    assert evaluate.multiselect(key="evaluate.methods").value == STARTING
    table = auc_table(evaluate)
    assert len(table) == len(STARTING)
    aucs = table.drop(columns="Method")
    assert list(aucs.columns) == [
        "Deletion AUC (↓ better)", "Insertion AUC (↑ better)",
        "Allegiance AUC, black (↓ better)", "Allegiance AUC, white (↓ better)",
    ]
    assert ((aucs >= 0) & (aucs <= 1)).all().all()
    # One figure per curve, one line per method.
    for word in ("Deletion", "Insertion", "black", "white"):
        (figure,) = titled(evaluate, word)
        assert len(figure["data"]) == len(STARTING)


def test_fewer_methods_give_fewer_rows(evaluate):
    evaluate.multiselect(key="evaluate.methods").set_value(["gradient", "negative"]).run()
    assert not evaluate.exception and not evaluate.error
    assert list(auc_table(evaluate)["Method"]) == ["Gradient", "Negative gradient"]


def test_ranking_signed_maps_by_magnitude_changes_only_the_signed_ones(evaluate):
    before = auc_table(evaluate).set_index("Method")
    evaluate.selectbox(key="evaluate.ranking").set_value("magnitude").run()
    assert not evaluate.exception and not evaluate.error
    after = auc_table(evaluate).set_index("Method")
    # Unsigned: |map| is the map, so the same pixels go in the same order; the AUCs agree to the
    # rounding of batched passes, whose chunk sizes the pass module measures as it goes.
    assert np.allclose(after.loc["Gradient"].astype(float), before.loc["Gradient"].astype(float), rtol=1e-5, atol=1e-6)
    assert not np.allclose(after.loc["Integrated gradients"].astype(float),
                           before.loc["Integrated gradients"].astype(float), rtol=1e-3, atol=1e-4)


def test_no_method_asks_for_one(evaluate):
    evaluate.multiselect(key="evaluate.methods").set_value([]).run()
    assert not evaluate.exception
    assert any("Pick at least one method" in i.value for i in evaluate.info)


def test_the_randomisation_check_shows_a_plot_per_method_after_its_button(evaluate):
    assert not titled(evaluate, "Gradient")  # nothing randomised before the click
    evaluate.button(key="evaluate.randomise").click().run()
    assert not evaluate.exception and not evaluate.error
    plots = [f for f in figures(evaluate) if f["layout"].get("yaxis", {}).get("title", {}).get("text", "").startswith(
        "similarity")]
    assert sorted(p["layout"]["title"]["text"] for p in plots) == [
        "Gradient", "Integrated gradients", "Negative gradient", "Positive gradient"]
    for plot in plots:
        assert [t["name"] for t in plot["data"]] == ["Spearman rank correlation of |map|", "SSIM"]
    # The check stays shown when another setting changes (it is cached, not recomputed).
    evaluate.slider(key="evaluate.keep").set_value(0.3).run()
    assert not evaluate.exception and len(figures(evaluate)) == 4 + len(STARTING)


def test_sufficiency_shows_a_fraction_per_fill_and_the_refilled_images(evaluate):
    lines = [m.value for m in evaluate.markdown if "refills kept" in m.value]
    assert sorted(line.split("**")[1] for line in lines) == sorted(FILLS)
    assert all(line.endswith("%)") for line in lines)
    table = next(d.value for d in evaluate.dataframe if "blur" in d.value.columns)
    assert len(table) == len(STARTING)
    fractions = table[list(FILLS)]
    assert ((fractions >= 0) & (fractions <= 1)).all().all()
    strips = evaluate.get("image")  # one strip of refilled images per fill, captioned with the class
    assert len(strips) == len(FILLS) and all(set(strip.captions) <= set(CLASSES) for strip in strips)
    evaluate.multiselect(key="evaluate.fills").set_value(["blur", "noise"]).run()
    assert sorted(m.value.split("**")[1] for m in evaluate.markdown if "refills kept" in m.value) == ["blur", "noise"]


def test_keeping_every_pixel_keeps_the_class_everywhere(evaluate):
    evaluate.slider(key="evaluate.keep").set_value(1.0).run()
    assert not evaluate.exception
    table = next(d.value for d in evaluate.dataframe if "blur" in d.value.columns)
    assert (table[list(FILLS)] == 1.0).all().all()


def test_asking_for_road_adds_its_two_aucs_and_curves_computed_by_road_curve(evaluate):
    evaluate.multiselect(key="evaluate.methods").set_value(["gradient"]).run()
    evaluate.checkbox(key="evaluate.road").check().run(timeout=TIMEOUT)
    assert not evaluate.exception and not evaluate.error
    table = auc_table(evaluate)
    most, least = "ROAD AUC, most relevant first (↓ better)", "ROAD AUC, least relevant first (↑ better)"
    assert most in table.columns and least in table.columns
    assert 0 <= table[most][0] <= 0.9 and 0 <= table[least][0] <= 0.9
    assert len(titled(evaluate, "ROAD: most")) == 1 and len(titled(evaluate, "ROAD: least")) == 1
