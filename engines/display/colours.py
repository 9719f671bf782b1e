"""Colour scales for saliency maps that colour-blind readers can read (pure numpy).

Unsigned maps use a sequential scale whose lightness rises steadily from zero to the top
(viridis: van der Walt & Smith 2015, perceptually uniform and legible with every common colour
vision deficiency). Signed maps use a diverging blue–orange scale, the pair of hues that
protan, deutan and tritan readers all tell apart (Brewer's advice; red–green is the pair they
confuse), with equal lightness at equal distances from zero on either side, so neither sign
looks stronger than the other.

Each scale comes in two forms, as plotly colour scales (`[position, "rgba(r,g,b,a)"]`): an
overlay form that fades to transparent at zero, so the image shows through where a map is
silent, and an opaque form for a heat map drawn on its own.
"""

from __future__ import annotations

import numpy as np

# viridis, sampled at ten even steps (matplotlib's table, as plotly ships it); CIELAB lightness
# L* rises from 15 to 91.
_VIRIDIS = [
    (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (110, 206, 88), (181, 222, 43), (253, 231, 37),
]
# Blue–orange, made in CIELAB: from a near-white (L* 97) at zero, lightness falls linearly to
# L* 48 at either end while chroma rises to 55 (as t^0.8, t the distance from zero), at hue
# angles 275° (blue) and 55° (orange); converted to sRGB and rounded. Listed from the most
# negative to the most positive.
_BLUE_ORANGE = [
    (0, 129, 231), (75, 157, 241), (142, 186, 248), (194, 216, 253), (246, 246, 246),
    (248, 206, 183), (236, 168, 131), (217, 132, 82), (195, 96, 34),
]


def _overlay_alpha(strength: np.ndarray) -> np.ndarray:
    """Opacity of a colour at `strength` in [0, 1] (distance from zero on the scale, 1 at the
    colour limit): 0 at zero, so silent pixels keep the image's colour, rising in proportion, so
    weak values leave a faint tint and only the strong ones cover the image as far as the
    overlay's opacity allows (a steeper ramp hid the single bright pixels of gradient maps; a
    square-root one veiled the whole image)."""
    return np.clip(strength, 0.0, 1.0)


def _scale(colours: list[tuple[int, int, int]], signed: bool, transparent: bool) -> list:
    positions = np.linspace(0.0, 1.0, len(colours))
    strength = np.abs(positions - 0.5) * 2 if signed else positions
    alpha = _overlay_alpha(strength) if transparent else np.ones_like(positions)
    return [[round(float(p), 4), f"rgba({r},{g},{b},{round(float(a), 3):g})"]
            for p, (r, g, b), a in zip(positions, colours, alpha)]


SEQUENTIAL = _scale(_VIRIDIS, signed=False, transparent=True)
"""Unsigned maps over the image: viridis, fading to transparent at zero."""
DIVERGING = _scale(_BLUE_ORANGE, signed=True, transparent=True)
"""Signed maps over the image: blue (negative) to orange (positive), transparent at zero."""
SEQUENTIAL_OPAQUE = _scale(_VIRIDIS, signed=False, transparent=False)
"""Unsigned maps drawn on their own: viridis, opaque."""
DIVERGING_OPAQUE = _scale(_BLUE_ORANGE, signed=True, transparent=False)
"""Signed maps drawn on their own: blue to a near-white zero to orange, opaque."""


def colour_scale(signed: bool, transparent: bool = True) -> list:
    """The plotly colour scale for a map: diverging if `signed`, sequential otherwise; fading to
    transparent at zero (`transparent`, for overlays) or opaque (a heat map on its own)."""
    if signed:
        return DIVERGING if transparent else DIVERGING_OPAQUE
    return SEQUENTIAL if transparent else SEQUENTIAL_OPAQUE


def scale_colours(scale: list, positions: np.ndarray) -> np.ndarray:
    """RGBA in [0, 1], shape `positions.shape + (4,)`, of `positions` in [0, 1] on a plotly colour
    scale of 'rgba(...)' stops, interpolated linearly between stops (as plotly draws them)."""
    stops = np.array([s[0] for s in scale])
    rgba = np.array([[float(v) for v in s[1][5:-1].split(",")] for s in scale])  # (S, 4), RGB in 0..255
    rgba[:, :3] /= 255.0
    return np.stack([np.interp(positions, stops, rgba[:, c]) for c in range(4)], axis=-1)
