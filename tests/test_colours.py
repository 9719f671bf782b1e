"""Colour scales people can read, colour-blind readers included: lightness checked in CIELAB
with scikit-image, colour vision deficiencies simulated with Machado, Oliveira & Fernandes
(2009)'s matrices at full severity."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from engines.display import colours

# Machado et al. 2009, severity 1.0, acting on linear RGB.
DEFICIENCIES = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def sampled(scale: list, count: int = 101) -> np.ndarray:
    """sRGB in [0, 1], `(count, 3)`, along the scale as plotly draws it."""
    return colours.scale_colours(scale, np.linspace(0, 1, count))[:, :3]


def lab(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb[None])[0]


def as_seen_with(deficiency: str, rgb: np.ndarray) -> np.ndarray:
    """sRGB colours as a reader with `deficiency` sees them (simulated in linear RGB)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(linear @ DEFICIENCIES[deficiency].T, 0, 1)
    return np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)


def test_the_sequential_scale_gets_lighter_all_the_way_up():
    lightness = lab(sampled(colours.SEQUENTIAL))[:, 0]
    assert np.all(np.diff(lightness) > 0)
    assert lightness[-1] - lightness[0] > 70  # dark to light: low and high values never look alike


def test_the_sequential_scale_steps_evenly_in_lightness():
    lightness = lab(sampled(colours.SEQUENTIAL, 11))[:, 0]
    steps = np.diff(lightness)
    assert steps.max() < 1.6 * steps.min()  # perceptually near-uniform, unlike a rainbow


def test_the_diverging_scale_is_symmetric_in_lightness_about_zero():
    lightness = lab(sampled(colours.DIVERGING))[:, 0]
    negative, positive = lightness[:51][::-1], lightness[50:]  # both from zero outwards
    assert np.max(np.abs(negative - positive)) < 2.0  # neither sign looks stronger
    assert np.all(np.diff(negative) < 0) and np.all(np.diff(positive) < 0)  # darker the farther from zero
    assert lightness[50] > 95  # zero is near-white


@pytest.mark.parametrize("deficiency", [None, *DEFICIENCIES])
def test_the_two_signs_stay_apart_for_every_reader(deficiency):
    rgb = sampled(colours.DIVERGING)
    seen = rgb if deficiency is None else as_seen_with(deficiency, rgb)
    colours_lab = lab(seen)
    for offset in (25, 50):  # halfway out and at the ends: the same strength, opposite signs
        gap = deltaE_ciede2000(colours_lab[50 - offset], colours_lab[50 + offset])
        assert gap > (15 if offset == 25 else 30), (deficiency, offset, gap)


@pytest.mark.parametrize("deficiency", list(DEFICIENCIES))
def test_the_sequential_scale_keeps_its_order_for_colour_blind_readers(deficiency):
    lightness = lab(as_seen_with(deficiency, sampled(colours.SEQUENTIAL)))[:, 0]
    assert np.all(np.diff(lightness) > 0)


def test_overlay_scales_fade_to_transparent_at_zero_and_opaque_ones_never_do():
    def alphas(scale):
        return colours.scale_colours(scale, np.linspace(0, 1, 101))[:, 3]

    assert alphas(colours.SEQUENTIAL)[0] == 0 and alphas(colours.SEQUENTIAL)[-1] == 1
    assert np.all(np.diff(alphas(colours.SEQUENTIAL)) > 0)
    signed = alphas(colours.DIVERGING)
    assert signed[50] == 0 and signed[0] == signed[-1] == 1 and np.allclose(signed, signed[::-1])
    for scale in (colours.SEQUENTIAL_OPAQUE, colours.DIVERGING_OPAQUE):
        assert np.all(alphas(scale) == 1)
    assert colours.colour_scale(True) is colours.DIVERGING
    assert colours.colour_scale(False, transparent=False) is colours.SEQUENTIAL_OPAQUE
