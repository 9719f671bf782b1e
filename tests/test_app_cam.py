"""The CAM and surrogate families on the dashboard's pages, under AppTest."""

from __future__ import annotations

import pytest

import engines
from streamlit.testing.v1 import AppTest

from helpers import on_shapes_star
from test_app import APP, TIMEOUT, _load_own, _own_model_bytes, charts, explained, quick_estimates  # noqa: F401


@pytest.fixture
def shapes_app() -> AppTest:
    return on_shapes_star(APP, TIMEOUT)


def test_cam_and_surrogate_maps_appear_with_their_settings(shapes_app):
    """The two families have their own pickers; each map is drawn, with its settings."""
    app = shapes_app
    app.pills(key="methods.cam").set_value(["grad_cam", "score_cam"])
    app.pills(key="methods.surrogate").set_value(["lime", "kernel_shap"]).run()
    app.number_input(key="setting.score_cam.channels").set_value(8)
    app.number_input(key="setting.lime.samples").set_value(40)
    app.number_input(key="setting.kernel_shap.samples").set_value(40).run()
    assert not app.exception and not app.error
    chosen = sum(len(app.pills(key=f"methods.{family}").value) for family in engines.method_families())
    assert len(charts(app)) == 1 + chosen
    assert "class **star**" in explained(app)


def test_the_layer_picker_lists_convolutional_layers_with_their_sizes(shapes_app):
    """The layer setting offers the model's CAM layer and every convolutional layer by name and
    output size; another layer gives another map."""
    app = shapes_app
    app.pills(key="methods.cam").set_value(["layer_cam"]).run()
    picker = app.selectbox(key="setting.layer_cam.layer")
    shown = picker.options
    assert shown[0].startswith("the model's CAM layer: net.features.5 (Sequential, 128 × 8 × 8)")
    assert "net.features.1 (Sequential, 32 × 32 × 32)" in shown
    before = [c for c in charts(app)]
    picker.set_value("net.features.1").run()
    assert not app.exception and not app.error
    assert len(charts(app)) == len(before)
    assert "net.features.1" in str(app.query_params.get("settings"))  # a link keeps the layer


def test_a_torchscript_model_says_where_its_cam_maps_would_be():
    """An own TorchScript model: where the CAM map would be, the page says why it cannot be made
    (its layers cannot be hooked), with no error, and the other maps are still drawn."""
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.run()
    app.pills(key="methods.cam").set_value(["grad_cam"]).run()  # chosen first: AppTest cannot
    app = _load_own(app, _own_model_bytes(3), b"apple\nbanana\ncherry\n")  # re-send an own model's name
    assert not app.exception
    assert not app.error
    assert any("Grad-CAM" in i.value and "TorchScript" in i.value for i in app.info)
    assert len(charts(app)) >= 2  # the top-5 bars and the gradient map


def test_the_evaluate_page_scores_cam_and_surrogate_maps_and_randomises_them():
    """Evaluate: the new families get their AUC rows and a randomisation plot each."""
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.switch_page("app_pages/evaluate.py").run()
    app.selectbox(key="model").set_value("shapes_cnn")
    app.selectbox(key="sample").set_value("shapes_star").run()
    app.multiselect(key="evaluate.methods").set_value(["grad_cam", "kernel_shap"]).run()
    app.number_input(key="setting.kernel_shap.samples").set_value(8).run()
    assert not app.exception and not app.error
    assert list(app.dataframe[0].value["Method"]) == ["Grad-CAM", "Kernel SHAP"]
    before = len(charts(app))
    app.button(key="evaluate.randomise").click().run()
    assert not app.exception and not app.error
    assert len(charts(app)) == before + 2  # one randomisation plot per method


def test_the_randomisation_check_of_a_cam_map_keeps_the_models_cam_layer(monkeypatch):
    """The randomised copies of a catalogue model explain the layer its record names, as the
    shared model does (the layer travels with the module, not only with the LoadedModel)."""
    import engines
    from engines.core import passes

    layers = []
    original = passes.layer_gradient
    monkeypatch.setattr(passes, "layer_gradient", lambda model, x, layer, *a: layers.append(layer) or
                        original(model, x, layer, *a))
    shapes = engines.load_model("shapes_cnn", device="cpu")
    x = shapes.preprocess(engines.read_image(engines.sample_images()["shapes_star"]))
    steps = engines.randomisation_check(shapes, x, "grad_cam")
    assert len(layers) == len(steps) + 1 and set(layers) == {"net.features.5"}


def test_the_live_occlusion_page_ranks_pixels_by_a_cam_map():
    """Grad-CAM is cheap enough for the live page: it is offered there and its view runs."""
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.switch_page("app_pages/occlusion.py").run()
    app.selectbox(key="model").set_value("shapes_cnn")
    app.selectbox(key="sample").set_value("shapes_star").run()
    app.selectbox(key="occlusion.method").set_value("grad_cam").run()  # refused if it were not offered
    assert not app.exception and not app.error
    assert app.selectbox(key="occlusion.method").value == "grad_cam"
