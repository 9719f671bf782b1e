"""Display maths (engines/display/scaling.py): the colour clip and the smoothing for the eye
change how maps are drawn and never the maps themselves: not the stored ones, not the exported
`.npz`."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import engines
from engines.display import scaling

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "explore.py")
TIMEOUT = 300  # the first run imports torch and loads the model


def noise(shape=(32, 32), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_the_peak_is_the_percentile_of_the_magnitude_and_100_is_the_maximum():
    saliency = noise((50, 40))
    for percentile in (90.0, 97.5, 99.0):
        assert scaling.display_peak(saliency, percentile) == pytest.approx(np.percentile(np.abs(saliency), percentile))
    assert scaling.display_peak(saliency, 100.0) == np.abs(saliency).max()
    assert scaling.display_peak(saliency, 95.0) < scaling.display_peak(saliency, 99.0)  # a lower clip saturates more


def test_smoothing_returns_a_new_array_and_leaves_the_map_as_it_was():
    raw = noise().astype(np.float32)
    kept = raw.copy()
    for sigma in (0.0, 1.5):
        shown = scaling.smooth_for_display(raw, sigma)
        assert not np.shares_memory(shown, raw)
        assert np.array_equal(raw, kept)
    assert np.array_equal(scaling.smooth_for_display(raw, 0.0), kept)


def test_smoothing_keeps_a_constant_map_and_the_total_of_a_blob_away_from_the_edges():
    assert np.allclose(scaling.smooth_for_display(np.full((20, 30), 2.5), 3.0), 2.5)
    blob = np.zeros((41, 41))
    blob[20, 20], blob[18, 23] = 1.0, -0.5
    smoothed = scaling.smooth_for_display(blob, 2.0)
    assert smoothed.sum() == pytest.approx(blob.sum()) and smoothed.max() < 1.0
    assert np.unravel_index(smoothed.argmax(), smoothed.shape) == (20, 20)


def test_smoothing_matches_a_gaussian_filter():
    from scipy.ndimage import gaussian_filter

    raw = noise((24, 36))
    assert np.allclose(scaling.smooth_for_display(raw, 1.5), gaussian_filter(raw, 1.5, mode="reflect", truncate=3.0))


def test_a_negative_smoothing_is_refused_with_a_message():
    with pytest.raises(ValueError, match="≥ 0"):
        scaling.smooth_for_display(noise(), -1.0)


def test_gradient_like_maps_are_pixel_level_and_region_maps_are_not():
    assert scaling.is_pixel_level(noise())
    blocks = np.kron(np.arange(16.0).reshape(4, 4), np.ones((8, 8)))  # occlusion-like: one value per region
    assert not scaling.is_pixel_level(blocks)
    yy, xx = np.mgrid[:32, :32]
    assert not scaling.is_pixel_level(np.exp(-((yy - 16) ** 2 + (xx - 12) ** 2) / 60))  # a smooth mask
    assert not scaling.is_pixel_level(np.zeros((8, 8)))


def test_display_settings_smooth_only_pixel_level_maps():
    display = engines.DisplaySettings(smoothing=2.0)
    blocks = np.kron(np.arange(4.0).reshape(2, 2), np.ones((8, 8)))
    assert np.array_equal(display.shown(blocks), blocks) and not np.shares_memory(display.shown(blocks), blocks)
    assert np.allclose(display.shown(noise()), scaling.smooth_for_display(noise(), 2.0))
    assert np.array_equal(engines.DisplaySettings().shown(noise()), noise())  # off by default


@pytest.mark.parametrize("bad", [dict(view="3d"), dict(opacity=1.5), dict(percentile=50.0), dict(smoothing=-1.0),
                                 dict(smoothing=100.0), dict(percentile="99")])
def test_display_settings_refuse_values_out_of_range(bad):
    with pytest.raises(ValueError):
        engines.DisplaySettings(**bad)


def test_the_default_opacity_leaves_the_image_visible_under_the_strongest_value():
    image = np.full((1, 2, 3), 200, dtype=np.uint8)
    picture = engines.overlay_rgb(image, np.array([[0.0, 1.0]]), signed=False, shared_max=1.0)
    top = np.array([int(v) for v in engines.SEQUENTIAL[-1][1][5:-1].split(",")[:3]])
    expected = 200 * (1 - engines.DisplaySettings().opacity) + top * engines.DisplaySettings().opacity
    assert tuple(picture[0, 0]) == (200, 200, 200) and np.allclose(picture[0, 1], expected, atol=1)
    assert engines.DisplaySettings().opacity <= 0.7


# ---------------------------------------------------------------- the Explore page, end to end


def decoded(array) -> np.ndarray:
    """A plotly JSON array: a list, or the typed-array form {"dtype", "bdata" (base64), "shape"}."""
    if not isinstance(array, dict):
        return np.array(array, dtype=float)
    values = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    shape = array.get("shape")
    return values.reshape([int(n) for n in str(shape).split(",")] if shape else -1).astype(float)


def test_the_page_draws_smoothed_clipped_maps_while_the_store_and_the_npz_keep_the_raw_ones(monkeypatch):
    from dashboard import exports, resources

    exported = {}
    real_npz = exports.maps_npz

    def recording_npz(maps, metadata):
        exported["npz"] = real_npz(maps, metadata)
        return exported["npz"]

    monkeypatch.setattr(exports, "maps_npz", recording_npz)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["model"] = "shapes_cnn"
    at.session_state["sample"] = "shapes_star"
    for family in engines.method_families():
        at.session_state[f"methods.{family}"] = ["gradient"] if family == "linear" else []
    at.session_state["display.smoothing"] = 2.0
    at.session_state["display.percentile"] = 95.0
    at.run()
    assert not at.exception and not at.error

    loaded = engines.load_model("shapes_cnn")
    x = loaded.preprocess(engines.read_image(engines.sample_images()["shapes_star"]))
    target = at.selectbox(key="target").value
    raw = engines.explain(loaded, x, "gradient", target).map[0].numpy()  # (H, W)

    traces = [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]
    heat = next(t for t in traces if t["type"] == "heatmap")
    drawn = decoded(heat["z"])
    assert np.allclose(drawn, scaling.smooth_for_display(raw, 2.0), atol=1e-5)  # the page smoothed it …
    assert heat["zmax"] == pytest.approx(np.percentile(np.abs(drawn), 95.0), rel=1e-4)  # … and clipped at 95

    digest = engines.image_digest(engines.sample_images()["shapes_star"].read_bytes())
    settings = json.dumps({"gradient": engines.method_info("gradient").defaults()}, sort_keys=True)
    assert resources.missing_maps("shapes_cnn", "auto", digest, ("gradient",), settings, target) == []  # the page's
    stored = resources.maps("shapes_cnn", "auto", digest, x, ("gradient",), settings, target)
    assert np.array_equal(stored["gradient"].map[0].numpy(), raw)  # … the store kept the raw map
    saved = np.load(io.BytesIO(exported["npz"]))
    assert np.array_equal(saved["gradient"], raw.astype(np.float32))  # … and so did the export
