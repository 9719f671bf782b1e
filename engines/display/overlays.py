"""Colouring a saliency map over its image: pure numpy, shared by the dashboard and the audit.

Maps fade to transparent at zero, so the image shows through where a map is silent: signed maps
on a diverging scale centred at zero, unsigned ones on a sequential scale from zero up. Colour
limits sit at a high percentile of |map| so a few extreme pixels do not wash out the rest.
"""

from __future__ import annotations

import numpy as np

# Colour scales (plotly's format: [position, "rgba(r,g,b,a)"]) that fade to transparent at zero, so
# the overlay reads as "where", not as a dark veil (inferno-like and RdBu-like hues).
SEQUENTIAL = [
    [0.0, "rgba(0,0,4,0)"], [0.15, "rgba(87,16,110,0.35)"], [0.4, "rgba(188,55,84,0.75)"],
    [0.7, "rgba(249,142,9,0.92)"], [1.0, "rgba(252,255,164,1)"],
]
DIVERGING = [
    [0.0, "rgba(5,48,97,1)"], [0.3, "rgba(67,147,195,0.8)"], [0.5, "rgba(247,247,247,0)"],
    [0.7, "rgba(214,96,77,0.8)"], [1.0, "rgba(103,0,31,1)"],
]
DISPLAY_PERCENTILE = 99.0
"""Colour limits sit at this percentile of |map|, so a few extreme pixels do not wash out the
rest (values beyond it show in the end colour; hover still shows the raw value)."""


def image_array(x) -> np.ndarray:
    """`(1, 3, H, W)` or `(3, H, W)` tensor (or array) in [0, 1] → `(H, W, 3)` uint8 for display."""
    array = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x).squeeze()
    return (np.clip(array.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def display_peak(saliency: np.ndarray) -> float:
    """The value the colour scale tops out at: the `DISPLAY_PERCENTILE` of |map|, or its max
    where that percentile is zero (a sparse map)."""
    magnitude = np.abs(saliency)
    peak = float(np.percentile(magnitude, DISPLAY_PERCENTILE))
    return peak if peak > 0 else float(magnitude.max())


def color_limits(saliency: np.ndarray, signed: bool, shared_max: float | None = None) -> tuple[float, float]:
    """Colour-scale limits: symmetric about zero for signed maps, [0, peak] for unsigned ones;
    an all-zero map gets (0, 1) so it shows as blank rather than failing."""
    peak = shared_max if shared_max is not None else display_peak(saliency)
    peak = peak if peak > 0 and np.isfinite(peak) else 1.0
    return (-peak, peak) if signed else (0.0, peak)


def _scale_colours(scale: list, positions: np.ndarray) -> np.ndarray:
    """RGBA in [0, 1] for `positions` in [0, 1] on a plotly colour scale of 'rgba(...)' stops."""
    stops = np.array([s[0] for s in scale])
    rgba = np.array([[float(v) for v in s[1][5:-1].split(",")] for s in scale])  # (S, 4), RGB in 0..255
    rgba[:, :3] /= 255.0
    return np.stack([np.interp(positions, stops, rgba[:, c]) for c in range(4)], axis=-1)


def overlay_rgb(image: np.ndarray, saliency: np.ndarray, *, signed: bool, opacity: float = 0.85,
                shared_max: float | None = None) -> np.ndarray:
    """The map `(H, W)` over the image `(H, W, 3)` uint8, as an `(H, W, 3)` uint8 picture for files
    (PNG, reports): each pixel blended with its colour on the scale by the colour's own alpha
    times `opacity`, so zero-saliency pixels keep the image's colour exactly."""
    low, high = color_limits(saliency, signed, shared_max)
    positions = np.clip((np.nan_to_num(saliency) - low) / (high - low), 0, 1)
    colours = _scale_colours(DIVERGING if signed else SEQUENTIAL, positions)  # (H, W, 4)
    alpha = colours[..., 3:] * opacity
    blended = image.astype(np.float64) / 255 * (1 - alpha) + colours[..., :3] * alpha
    return (blended * 255).round().astype(np.uint8)
