"""Colouring a saliency map over its image: pure numpy, shared by the dashboard and the audit.

Maps fade to transparent at zero, so the image shows through where a map is silent: signed maps
on a diverging blue–orange scale centred at zero, unsigned ones on viridis from zero up (see
`colours.py`). Colour limits sit at a high percentile of |map| (`scaling.py`) so a few extreme
pixels do not wash out the rest.
"""

from __future__ import annotations

import numpy as np

from engines.display.colours import DIVERGING, SEQUENTIAL, colour_scale, scale_colours  # noqa: F401
from engines.display.scaling import DEFAULT_OPACITY, DISPLAY_PERCENTILE, color_limits, display_peak  # noqa: F401


def image_array(x) -> np.ndarray:
    """`(1, 3, H, W)` or `(3, H, W)` tensor (or array) in [0, 1] → `(H, W, 3)` uint8 for display."""
    array = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x).squeeze()
    return (np.clip(array.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def _positions(saliency: np.ndarray, signed: bool, shared_max: float | None, percentile: float) -> np.ndarray:
    low, high = color_limits(saliency, signed, shared_max, percentile)
    return np.clip((np.nan_to_num(saliency) - low) / (high - low), 0, 1)


def overlay_rgb(image: np.ndarray, saliency: np.ndarray, *, signed: bool, opacity: float = DEFAULT_OPACITY,
                shared_max: float | None = None, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """The map `(H, W)` over the image `(H, W, 3)` uint8, as an `(H, W, 3)` uint8 picture for files
    (PNG, reports): each pixel blended with its colour on the scale by the colour's own alpha
    times `opacity`, so zero-saliency pixels keep the image's colour exactly. The scale is
    clipped at `percentile` of |map| (or at `shared_max`)."""
    colours = scale_colours(colour_scale(signed), _positions(saliency, signed, shared_max, percentile))  # (H, W, 4)
    alpha = colours[..., 3:] * opacity
    blended = image.astype(np.float64) / 255 * (1 - alpha) + colours[..., :3] * alpha
    return (blended * 255).round().astype(np.uint8)


def heatmap_rgb(saliency: np.ndarray, *, signed: bool, shared_max: float | None = None,
                percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """The map `(H, W)` on its own, as an `(H, W, 3)` uint8 picture on the opaque scale."""
    colours = scale_colours(colour_scale(signed, transparent=False), _positions(saliency, signed, shared_max,
                                                                                 percentile))
    return (colours[..., :3] * 255).round().astype(np.uint8)
