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


# ---------------------------------------------------------------- images the model is unsure of


def tie_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "nearly tie" in w.value]


def allegiance_expander(at: AppTest):
    return next((e for e in at.expander if e.label.startswith("Allegiance curves")), None)


def test_a_confident_image_gets_no_tie_warning_and_every_curve_in_view(evaluate):
    assert not tie_warnings(evaluate) and allegiance_expander(evaluate) is None
    assert len(titled(evaluate, "Allegiance")) == 2


def tied_blend() -> bytes:
    """A PNG blending the shapes star into the ring at the weight where the shapes CNN's top two
    classes come closest (measured here, so it holds for any training of the CNN)."""
    import io

    import torch
    from PIL import Image

    import engines

    loaded = engines.load_model("shapes_cnn")
    star, ring = (np.asarray(engines.read_image(engines.sample_images()[name]).convert("RGB"), dtype=float)
                  for name in ("shapes_star", "shapes_ring"))
    blends = [Image.fromarray(((1 - w) * star + w * ring).round().astype(np.uint8)) for w in np.linspace(0, 1, 101)]
    top = engines.predict(loaded, torch.cat([loaded.preprocess(b) for b in blends])).probabilities.topk(2).values
    gaps = (top[:, 0] - top[:, 1]).numpy()
    assert gaps.min() < 0.03  # the classes cross somewhere between the two shapes
    buffer = io.BytesIO()
    blends[int(gaps.argmin())].save(buffer, format="PNG")
    return buffer.getvalue()


def test_near_tied_top_classes_are_said_and_the_probability_curves_come_first():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model"] = "shapes_cnn"
    at.session_state["evaluate.methods"] = ["gradient", "positive"]
    at.session_state["evaluate.fills"] = ["blur"]
    at.run()
    at.file_uploader(key="upload").set_value(("blend.png", tied_blend(), "image/png")).run()
    assert not at.exception and not at.error
    (warning,) = tie_warnings(at)
    assert "allegiance AUCs will not separate the methods" in warning
    assert not [b for b in at.button if b.key == "evaluate.confident"]  # an upload: no sample to switch to
    hidden = allegiance_expander(at)
    assert hidden is not None and len(hidden.get("plotly_chart")) == 2  # allegiance curves, set aside
    assert len(titled(at, "Deletion")) == len(titled(at, "Insertion")) == 1  # in view, above them
    assert list(auc_table(at).columns[1:3]) == ["Deletion AUC (↓ better)", "Insertion AUC (↑ better)"]


def test_the_first_visit_on_the_tied_default_sample_starts_on_the_confident_one():
    """On the default model and sample (a near tie), the page's first run switches the sidebar to
    the confident sample and says why; picking the tied sample again is respected and warned about."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["evaluate.methods"] = []  # nothing to compute: the switch happens before any map
    at.run()
    assert not at.exception
    assert at.selectbox(key="sample").value == "camera" and at.selectbox(key="model").value == "efficientnet_lite0"
    assert any("rather than “chelsea”" in i.value for i in at.info) and not tie_warnings(at)
    at.selectbox(key="sample").set_value("chelsea").run()
    assert at.selectbox(key="sample").value == "chelsea"  # once per session only: the person's choice stands
    (warning,) = tie_warnings(at)
    assert "Egyptian cat" in warning and "tiger cat" in warning
    at.button(key="evaluate.confident").click().run()
    assert at.selectbox(key="sample").value == "camera" and not tie_warnings(at)


def test_the_confident_sample_is_the_one_the_default_model_is_surest_of(efficientnet):
    """The measurement behind the page's CONFIDENT_SAMPLE, done again: the largest gap between
    the top two probabilities of any bundled sample, and the sidebar's default sample a near tie."""
    import ast

    import torch

    import engines

    constants = {node.targets[0].id: node.value.value for node in ast.parse(Path(PAGE).read_text()).body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, ast.Constant)}
    assert efficientnet.name == engines.DEFAULT_MODEL
    names = list(engines.sample_images())
    x = torch.cat([efficientnet.preprocess(engines.read_image(engines.sample_images()[n])) for n in names])
    top = engines.predict(efficientnet, x).probabilities.topk(2).values
    gaps = dict(zip(names, (top[:, 0] - top[:, 1]).tolist()))
    assert max(gaps, key=gaps.get) == constants["CONFIDENT_SAMPLE"]
    assert gaps[constants["CONFIDENT_SAMPLE"]] > 0.5
    assert gaps[constants["SIDEBAR_DEFAULT_SAMPLE"]] < constants["NEAR_TIE"]


def test_through_the_entry_point_the_switch_reaches_the_shared_sidebar():
    """In the full app the sidebar is drawn before the page: the switch still lands there, and
    the other pages then show the confident sample too."""
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "app.py"), default_timeout=TIMEOUT)
    at.session_state["evaluate.methods"] = []
    import engines

    for family in engines.method_families():
        at.session_state[f"methods.{family}"] = []  # Explore computes nothing either
    at.run()
    assert not at.exception and at.selectbox(key="sample").value == "chelsea"  # Explore keeps the default
    at.switch_page("app_pages/evaluate.py").run()
    assert not at.exception and at.selectbox(key="sample").value == "camera"
    assert any("rather than “chelsea”" in i.value for i in at.info)
    at.switch_page("app_pages/explore.py").run()
    assert not at.exception and at.selectbox(key="sample").value == "camera"


def test_asking_for_road_adds_its_two_aucs_and_curves_computed_by_road_curve(evaluate):
    evaluate.multiselect(key="evaluate.methods").set_value(["gradient"]).run()
    evaluate.checkbox(key="evaluate.road").check().run(timeout=TIMEOUT)
    assert not evaluate.exception and not evaluate.error
    table = auc_table(evaluate)
    most, least = "ROAD AUC, most relevant first (↓ better)", "ROAD AUC, least relevant first (↑ better)"
    assert most in table.columns and least in table.columns
    assert 0 <= table[most][0] <= 0.9 and 0 <= table[least][0] <= 0.9
    assert len(titled(evaluate, "ROAD: most")) == 1 and len(titled(evaluate, "ROAD: least")) == 1
