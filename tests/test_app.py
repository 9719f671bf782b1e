"""The dashboard under Streamlit's AppTest: it loads, shows maps, and survives what people do."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import engines
from engines.models import catalogue as models

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
TIMEOUT = 300  # first run imports torch and loads the model


@pytest.fixture(autouse=True)
def quick_estimates(monkeypatch):
    """Time estimates come from a measured pass time, which depends on how busy the machine is;
    pin them so which maps run at once does not. A test that needs slow maps pins its own."""
    monkeypatch.setattr(models.LoadedModel, "estimate_seconds", lambda self, cost: 0.5)


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def explained(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("Maps explain"))


def png_bytes(color=(0, 128, 255), size=(300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_explore_page_shows_top5_and_a_map_per_chosen_method(app):
    assert not app.error
    chosen = [m for family in engines.method_families() for m in app.pills(key=f"methods.{family}").value]
    assert {"gradient", "positive"} <= set(chosen)
    assert len(charts(app)) == 1 + len(chosen)  # the top-5 bars and one overlay per map


def test_the_first_screen_has_a_map_of_every_family(app):
    """Linear, signed, nonlinear, mask, occlusion and CAM maps all start chosen, at the first screen's
    settings; the surrogate maps (hundreds of passes) wait to be picked."""
    for family in engines.method_families():
        assert bool(app.pills(key=f"methods.{family}").value) == (family != "surrogate"), family
    assert app.number_input(key="setting.secant.patch").value == engines.FIRST_SCREEN["secant"]["patch"]
    assert "cat" in app.selectbox(key="target").format_func(app.selectbox(key="target").value)
    headings = [app.pills(key=f"methods.{family}").label for family in engines.method_families()]
    assert "Class activation maps (CAM)" in headings and "Mask-optimised maps" in headings


def test_one_method_of_each_family_gives_maps(app):
    """On the small shapes model, with a small query budget, this stays quick on a CPU."""
    app.selectbox(key="model").set_value("shapes_cnn")
    app.selectbox(key="sample").set_value("shapes_star").run()
    app.pills(key="methods.linear").set_value(["smoothgrad"])
    app.pills(key="methods.signed").set_value(["inactive"])
    app.pills(key="methods.nonlinear").set_value(["secant"])
    app.pills(key="methods.mask").set_value(["oise"])
    app.pills(key="methods.occlusion").set_value(["occlusion"])
    app.pills(key="methods.cam").set_value(["grad_cam"]).run()
    app.number_input(key="setting.oise.queries").set_value(64).run()
    assert not app.exception and not app.error
    assert len(charts(app)) == 1 + 6
    assert "class **star** for sample “shapes_star”" in explained(app)  # the shapes CNN gets it right


def test_many_class_models_compare_against_top_rivals_and_say_so(app):
    app.pills(key="methods.signed").set_value(["inactive"]).run()
    assert any("top 9 rival classes" in c.value for c in app.caption)


def test_choosing_another_target_explains_that_class(app):
    assert "Egyptian cat" in explained(app) or "tabby" in explained(app)
    second = app.selectbox(key="target").options[1]  # options are shown as "name (probability)"
    app.selectbox(key="target").select(second).run()
    assert not app.exception
    assert second.split(" (")[0] in explained(app)


def test_a_new_image_or_model_resets_the_target_to_its_top_class(app):
    app.selectbox(key="target").select(app.selectbox(key="target").options[2]).run()
    app.selectbox(key="sample").set_value("coffee").run()
    assert not app.exception and "class **espresso**" in explained(app)
    app.selectbox(key="model").set_value("shapes_cnn").run()  # 10 classes: the old index would not exist
    assert not app.exception and not app.error
    assert app.selectbox(key="target").value < 10


def test_a_bad_upload_shows_an_error_and_the_page_keeps_working(app):
    app.file_uploader(key="upload").set_value(("broken.png", b"this is not a png", "image/png")).run()
    assert not app.exception
    assert any("not an image" in e.value for e in app.error)
    assert "sample “chelsea”" in explained(app)  # the sample's maps are still there
    assert len(charts(app)) >= 2


def test_a_good_upload_is_explained(app):
    app.file_uploader(key="upload").set_value(("blue.png", png_bytes(), "image/png")).run()
    assert not app.exception and not app.error
    assert "your upload “blue.png”" in explained(app)
    assert len(charts(app)) >= 2


def test_a_model_without_weights_shows_a_message_not_a_traceback(app, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_reachable", lambda url, timeout=3.0: False)
    app.selectbox(key="model").set_value("resnet18").run()
    assert not app.exception
    assert any("cannot be used here" in e.value for e in app.error)


def test_out_of_range_settings_are_refused_by_the_widgets(app):
    app.pills(key="methods.linear").set_value(["smoothgrad"]).run()
    samples = app.number_input(key="setting.smoothgrad.samples")
    assert samples.min == 1 and samples.max == 1000


def test_on_a_busy_server_the_first_screen_still_starts_by_itself_but_other_maps_wait(monkeypatch):
    """At 3 s a map the first screen (24 s) passes the 10 s limit of other selections but starts
    by itself, refining in place; four more maps of the same cost (12 s) still wait for a click."""
    from dashboard import resources

    resources._map_store.clear()
    monkeypatch.setattr(models.LoadedModel, "estimate_seconds", lambda self, cost: 3.0)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not any("Not computed yet" in i.value for i in at.info)
    assert len(charts(at)) == 1 + len(engines.FIRST_SCREEN)
    at.pills(key="methods.linear").set_value(["gradient", "integrated_gradients", "smoothgrad"])
    at.pills(key="methods.mask").set_value(["oise", "rise", "extremal"])
    at.pills(key="methods.surrogate").set_value(["lime"]).run()
    assert any("Not computed yet: SmoothGrad, RISE" in i.value for i in at.info), [i.value for i in at.info]
    assert len(charts(at)) == 1 + len(engines.FIRST_SCREEN)
    at.pills(key="methods.linear").set_value(["gradient", "integrated_gradients"])
    at.pills(key="methods.mask").set_value(["oise"])
    at.pills(key="methods.surrogate").set_value([]).run()
    at.number_input(key="setting.integrated_gradients.steps").set_value(64).run()  # 3 s, not the first screen's
    assert not at.info and len(charts(at)) == 1 + len(engines.FIRST_SCREEN)


def test_slow_maps_wait_for_a_click_and_then_appear(monkeypatch):
    from dashboard import resources

    resources._map_store.clear()  # maps are shared server-wide: start from none computed
    monkeypatch.setattr(models.LoadedModel, "estimate_seconds", lambda self, cost: 60.0)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    first = len(engines.FIRST_SCREEN)
    assert any("Not computed yet" in i.value and f"About {60 * first} s" in i.value for i in at.info)  # 60 s a map
    assert len(charts(at)) == 1  # only the top-5 bars: nothing ran
    at.button(key="compute").click().run()
    assert not at.exception and not at.error
    assert len(charts(at)) == 1 + first
    at.slider(key="opacity").set_value(0.3).run()  # an unrelated widget: the maps stay, nothing reruns
    assert len(charts(at)) == 1 + first and not at.info


def test_export_offers_png_npz_and_an_html_report(app):
    labels = [b.label for b in app.download_button]
    assert {"Map grid (PNG)", "Maps (.npz)", "Report (HTML)"} <= set(labels)
    app.checkbox(key="export.metrics").check().run()
    assert not app.exception
    labels = [b.label for b in app.download_button]
    assert {"Metrics (CSV)", "Metrics (JSON)"} <= set(labels)


def test_a_link_reproduces_the_view_and_the_page_writes_its_view_back():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({
        "model": "shapes_cnn", "sample": "shapes_ring", "target": "3", "methods": "gradient,secant",
        "settings": '{"secant":{"patch":32}}',
    })
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="model").value == "shapes_cnn" and at.selectbox(key="sample").value == "shapes_ring"
    assert at.selectbox(key="target").value == 3  # "star", not the predicted "ring": the link wins
    assert at.pills(key="methods.linear").value == ["gradient"] and at.pills(key="methods.nonlinear").value == ["secant"]
    assert at.number_input(key="setting.secant.patch").value == 32
    assert "class **star** for sample “shapes_ring”" in explained(at)
    at.pills(key="methods.signed").set_value(["positive"]).run()
    written = at.query_params
    assert written["model"] == ["shapes_cnn"] or written["model"] == "shapes_cnn"
    assert "positive" in str(written["methods"]) and '"patch":32' in str(written["settings"])


def test_a_broken_link_is_ignored_not_an_error():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"model": "nope", "target": "99999", "methods": "gradient,bogus", "settings": "{not json"})
    at.run()
    assert not at.exception and not at.error
    assert at.pills(key="methods.linear").value == ["gradient"]


def test_no_page_prints_a_stray_string():
    """Streamlit's magic shows any bare string in a page script: only the docstring may be one."""
    import ast

    for page in (Path(APP).parent / "app_pages").glob("*.py"):
        body = ast.parse(page.read_text()).body
        strays = [n.lineno for n in body[1:] if isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant)]
        assert not strays, f"{page.name}: bare strings at lines {strays}"


@pytest.mark.parametrize("title", ["Occlusion, live", "Probe the nonlinearity", "Evaluate", "Data set", "Learn"])
def test_every_page_opens_from_the_app_and_keeps_the_sidebar(app, title):
    app.selectbox(key="model").set_value("shapes_cnn")
    app.selectbox(key="sample").set_value("shapes_ring").run()
    page = {"Occlusion, live": "occlusion", "Probe the nonlinearity": "probe", "Evaluate": "evaluate", "Data set": "dataset",
            "Learn": "learn"}[title]
    app.switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="model").value == "shapes_cnn" and app.selectbox(key="sample").value == "shapes_ring"


def _own_model_bytes(classes: int) -> bytes:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, classes)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Net()), buffer)
    return buffer.getvalue()


def _load_own(app: AppTest, model: bytes, classes: bytes) -> AppTest:
    app.radio(key="custom.kind").set_value("TorchScript (checked before it runs)").run()
    app.file_uploader(key="custom.file").set_value(("net.pt", model, "application/octet-stream"))
    app.file_uploader(key="custom.classes").set_value(("classes.txt", classes, "text/plain"))
    app.number_input(key="custom.size").set_value(32).run()
    return app.button(key="custom.load").click().run()


def test_your_own_torchscript_model_is_explained(app):
    _load_own(app, _own_model_bytes(3), b"apple\nbanana\ncherry\n")
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.selectbox(key="model").value.startswith("custom-")
    assert "your model (net.pt)" in app.selectbox(key="model").options  # options hold the shown labels
    assert any(name in explained(app) for name in ("apple", "banana", "cherry"))
    assert len(charts(app)) >= 2


def test_a_model_whose_output_does_not_fit_its_classes_says_so(app):
    _load_own(app, _own_model_bytes(3), b"only\ntwo\n")
    assert not app.exception
    assert any("class list has 2 names" in e.value for e in app.error)
    assert app.selectbox(key="model").value == "efficientnet_lite0"  # the page goes on as before


def test_a_pickled_model_file_is_refused_with_what_to_do(app):
    import torch

    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buffer)
    _load_own(app, buffer.getvalue(), b"a\nb\n")
    assert not app.exception
    assert any("not a TorchScript model" in e.value and "torch.jit.save" in e.value for e in app.error)
