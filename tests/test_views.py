"""Figures and display scaling: pure functions, checked without a browser."""

from __future__ import annotations

import numpy as np
import torch

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
    assert views.DIVERGING[2][0] == 0.5 and views.DIVERGING[2][1].endswith(",0)")


def test_top_classes_bar_highlights_the_target():
    figure = views.top_classes_bar(["a", "b", "c"], [0.5, 0.3, 0.2], highlight=1)
    colors = list(figure.data[0].marker.color)
    assert colors[1] != colors[0] == colors[2]
