"""Map colouring (engines/display/overlays.py), shared by the dashboard and the folder audit."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from dashboard import views
from engines.display import overlays

ENGINES = Path(overlays.__file__).resolve().parent


def test_the_engines_never_import_the_dashboard_or_a_user_interface():
    pattern = re.compile(r"^\s*(from|import)\s+(dashboard|streamlit|plotly)\b", re.MULTILINE)
    offenders = [path.name for path in ENGINES.glob("*.py") if pattern.search(path.read_text())]
    assert offenders == []


def test_the_dashboard_uses_the_same_colouring():
    for name in ("overlay_rgb", "color_limits", "display_peak", "image_array", "SEQUENTIAL", "DIVERGING"):
        assert getattr(views, name) is getattr(overlays, name)


def test_at_full_opacity_the_ends_of_the_scale_show_their_colours_and_zero_shows_the_image():
    image = np.full((4, 4, 3), 128, dtype=np.uint8)
    saliency = np.zeros((4, 4))
    saliency[0, 0], saliency[3, 3] = 2.0, -2.0
    signed = overlays.overlay_rgb(image, saliency, signed=True, opacity=1.0, shared_max=2.0)
    assert tuple(signed[0, 0]) == rgb(overlays.DIVERGING[-1]) and tuple(signed[3, 3]) == rgb(overlays.DIVERGING[0])
    assert (signed[1:3] == 128).all()
    unsigned = overlays.overlay_rgb(image, np.abs(saliency), signed=False, opacity=1.0, shared_max=2.0)
    assert tuple(unsigned[0, 0]) == tuple(unsigned[3, 3]) == rgb(overlays.SEQUENTIAL[-1])


def rgb(stop: list) -> tuple[int, int, int]:
    """The (r, g, b) of a plotly colour-scale stop [position, "rgba(r,g,b,a)"]."""
    return tuple(int(v) for v in stop[1][5:-1].split(",")[:3])


def test_the_heat_map_alone_is_opaque_and_zero_shows_the_scales_middle_or_bottom():
    saliency = np.array([[-2.0, 0.0, 2.0]])
    signed = overlays.heatmap_rgb(saliency, signed=True, shared_max=2.0)
    assert [tuple(p) for p in signed[0]] == [rgb(s) for s in overlays.DIVERGING[::4]]  # ends and the near-white zero
    unsigned = overlays.heatmap_rgb(np.abs(saliency), signed=False, shared_max=2.0)
    assert tuple(unsigned[0, 1]) == rgb(overlays.SEQUENTIAL[0]) and tuple(unsigned[0, 0]) == rgb(overlays.SEQUENTIAL[-1])


def test_the_clip_percentile_sets_how_many_pixels_show_in_the_end_colour():
    image = np.full((1, 101, 3), 128, dtype=np.uint8)
    saliency = np.arange(101, dtype=float)[None]  # 0 … 100: the p-th percentile is the value p
    for percentile in (99.0, 95.0, 90.0):
        picture = overlays.overlay_rgb(image, saliency, signed=False, opacity=1.0, percentile=percentile)
        top = np.all(picture[0] == rgb(overlays.SEQUENTIAL[-1]), axis=-1)
        assert np.flatnonzero(top).tolist() == list(range(int(percentile), 101))  # those at or above it, no others
    assert np.array_equal(saliency, np.arange(101)[None])  # drawing never changes the map


def test_image_array_takes_tensors_and_arrays_alike():
    x = torch.rand(1, 3, 5, 7)
    picture = overlays.image_array(x)
    assert picture.shape == (5, 7, 3) and picture.dtype == np.uint8
    assert np.array_equal(picture, overlays.image_array(x[0].numpy()))
    assert np.array_equal(picture, np.round(x[0].numpy().transpose(1, 2, 0) * 255))
