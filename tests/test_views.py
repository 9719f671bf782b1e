"""Figures and display scaling: pure functions, checked without a browser."""

from __future__ import annotations

import numpy as np
import torch

import engines
from dashboard import views


def test_signed_maps_get_limits_symmetric_about_zero():
    saliency = np.linspace(-2.0, 1.0, 1000).reshape(20, 50)
    low, high = views.color_limits(saliency, signed=True)
    assert low == -high and high > 1.0


def test_a_few_extreme_pixels_do_not_set_the_scale():
    saliency = np.full((100, 100), 1.0)
    saliency[0, :5] = 1000.0  # 0.05 % of the pixels
    assert views.color_limits(saliency, signed=False) == (0.0, 1.0)


def test_a_sparse_map_still_gets_a_visible_scale():
    saliency = np.zeros((100, 100))
    saliency[:3, :3] = 0.5  # under 1 % non-zero: the percentile is 0, so the max is used
    assert views.color_limits(saliency, signed=False) == (0.0, 0.5)


def test_an_all_zero_map_shows_blank_rather_than_failing():
    assert views.color_limits(np.zeros((8, 8)), signed=True) == (-1.0, 1.0)
    assert views.color_limits(np.zeros((8, 8)), signed=False) == (0.0, 1.0)


def test_a_shared_scale_overrides_each_maps_own():
    assert views.color_limits(np.ones((4, 4)), signed=False, shared_max=3.0) == (0.0, 3.0)


def test_overlay_puts_the_map_over_the_image_with_hover_values():
    image = views.image_array(torch.rand(1, 3, 16, 12))
    assert image.shape == (16, 12, 3) and image.dtype == np.uint8
    figure = views.overlay(image, np.random.randn(16, 12), signed=True, title="t", opacity=0.5)
    picture, heat = figure.data
    assert picture.type == "image" and heat.type == "heatmap"
    assert heat.zmid == 0 and heat.opacity == 0.5 and "%{z" in heat.hovertemplate
    assert heat.colorscale == tuple(tuple(step) for step in views.DIVERGING)


def test_colour_scales_are_transparent_at_zero():
    assert views.SEQUENTIAL[0][1].endswith(",0)")
    middle = next(stop for stop in views.DIVERGING if stop[0] == 0.5)
    assert middle[1].endswith(",0)")


def test_the_heat_map_view_draws_the_map_alone_on_an_opaque_scale():
    image = views.image_array(torch.rand(1, 3, 16, 12))
    saliency = np.random.default_rng(0).standard_normal((16, 12))
    display = engines.DisplaySettings(view="heat map")
    (heat,) = views.map_figure(image, saliency, signed=True, title="t", display=display).data
    assert heat.type == "heatmap" and heat.opacity == 1.0
    assert heat.colorscale == tuple(tuple(step) for step in engines.colour_scale(True, transparent=False))
    assert all(stop[1].endswith(",1)") for stop in heat.colorscale)


def test_side_by_side_shows_the_image_beside_its_map_on_shared_axes():
    image = views.image_array(torch.rand(1, 3, 16, 12))
    figure = views.map_figure(image, np.random.default_rng(0).random((16, 12)), signed=False, title="t",
                              display=engines.DisplaySettings(view="side by side"))
    picture, heat = figure.data
    assert picture.type == "image" and heat.type == "heatmap"
    assert (picture.xaxis, heat.xaxis) == ("x", "x2") and figure.layout.xaxis2.matches == "x"
    assert figure.layout.yaxis2.matches == "y"  # zooming one panel zooms the other
    assert views.grid_columns(engines.DisplaySettings(view="side by side")) == 2
    assert views.grid_columns(engines.DisplaySettings()) == 3


def test_the_overlay_view_uses_the_chosen_opacity_and_clip():
    image = views.image_array(torch.rand(1, 3, 10, 10))
    saliency = np.arange(100, dtype=float).reshape(10, 10)
    display = engines.DisplaySettings(opacity=0.4, percentile=90.0)
    _, heat = views.map_figure(image, saliency, signed=False, title="t", display=display).data
    assert heat.opacity == 0.4 and heat.zmax == np.percentile(saliency, 90.0)


def test_smoothing_is_drawn_and_said_for_pixel_level_maps_only():
    image = views.image_array(torch.rand(1, 3, 32, 32))
    noise = np.random.default_rng(0).standard_normal((32, 32))  # changes from pixel to pixel
    blocks = np.kron(np.arange(16.0).reshape(4, 4), np.ones((8, 8)))  # a value per 8-pixel region
    display = engines.DisplaySettings(smoothing=2.0)
    _, heat = views.map_figure(image, noise, signed=True, title="Gradient", display=display).data
    assert np.allclose(heat.z, engines.smooth_for_display(noise, 2.0)) and "smoothed value" in heat.hovertemplate
    figure = views.map_figure(image, blocks, signed=False, title="Occlusion", display=display)
    assert np.array_equal(figure.data[1].z, blocks) and "smoothed" not in figure.layout.title.text
    assert "σ 2 px" in views.map_figure(image, noise, signed=True, title="G", display=display).layout.title.text


def test_a_shared_scale_is_the_largest_peak_of_the_maps_as_drawn():
    maps = [np.full((8, 8), 1.0), np.full((8, 8), 3.0)]
    assert views.shared_peak(maps, engines.DisplaySettings(shared=True)) == 3.0
    assert views.shared_peak(maps, engines.DisplaySettings(shared=False)) is None


def test_top_classes_bar_highlights_the_target():
    figure = views.top_classes_bar(["a", "b", "c"], [0.5, 0.3, 0.2], highlight=1)
    colors = list(figure.data[0].marker.color)
    assert colors[1] != colors[0] == colors[2]
