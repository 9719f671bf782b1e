"""How a map is drawn, never what it is (pure numpy): where its colour scale is clipped, and an
optional smoothing of pixel-level maps for the eye.

Everything here returns new arrays and leaves the map it is given untouched: the stored maps,
the `.npz` exports and every metric always see the raw map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

DISPLAY_PERCENTILE = 99.0
"""Default clip: the colour scale tops out at this percentile of |map|, so a few extreme pixels
do not wash out the rest (values beyond it show in the end colour; hover still shows the value)."""
PERCENTILE_RANGE = (90.0, 100.0)
"""Clips a person may choose: 100 is the map's maximum (no clipping)."""
SMOOTHING_RANGE = (0.0, 8.0)
"""Display smoothing, as the Gaussian's standard deviation in pixels; 0 is off."""
DEFAULT_OPACITY = 0.6
"""Overlay opacity: strong map values cover 60 % of the image's colour, weak ones far less (the
scales fade to transparent at zero), so the image stays visible under every map."""
VIEWS = ("overlay", "heat map", "side by side")
"""How a map is drawn: over the image, on its own, or on its own beside the image."""
PIXEL_LEVEL_ROUGHNESS = 0.5
"""A map is pixel-level when the mean |difference| between horizontal neighbours is at least
this fraction of its mean absolute deviation (white noise: √2 ≈ 1.41; gradient maps of a photo:
about 1; occlusion and mask maps, smooth over tens of pixels: under 0.05)."""


def display_peak(saliency: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> float:
    """The value the colour scale tops out at: the `percentile` (0–100) of |map|, or its max where
    that percentile is zero (a sparse map).

    Unlike Captum's `outlier_perc` (which clips where the largest values hold that share of the
    map's total |value|), this counts pixels: at 99, the brightest 1 % of pixels show in the end
    colour."""
    magnitude = np.abs(np.nan_to_num(np.asarray(saliency, dtype=np.float64)))
    if magnitude.size == 0:
        return 0.0
    peak = float(np.percentile(magnitude, percentile))
    return peak if peak > 0 else float(magnitude.max())


def color_limits(saliency: np.ndarray, signed: bool, shared_max: float | None = None,
                 percentile: float = DISPLAY_PERCENTILE) -> tuple[float, float]:
    """Colour-scale limits: symmetric about zero for signed maps, [0, peak] for unsigned ones,
    the peak at `percentile` of |map| unless a `shared_max` is given; an all-zero map gets (0, 1)
    so it shows as blank rather than failing."""
    peak = shared_max if shared_max is not None else display_peak(saliency, percentile)
    peak = peak if peak > 0 and np.isfinite(peak) else 1.0
    return (-peak, peak) if signed else (0.0, peak)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of standard deviation `sigma` pixels, truncated at 3σ."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def smooth_for_display(saliency: np.ndarray, sigma: float) -> np.ndarray:
    """The map `(..., H, W)` blurred by a Gaussian of `sigma` pixels (separable, edges mirrored),
    as a new float64 array; `sigma` 0 returns an unchanged copy. Signed values are blurred as
    they are, so neighbouring evidence of opposite signs cancels, as it would to the eye."""
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"the display smoothing must be a number of pixels ≥ 0; got {sigma}")
    blurred = np.array(saliency, dtype=np.float64)  # a copy: the raw map is never touched
    if sigma == 0 or blurred.ndim < 2:
        return blurred
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    for axis in (-2, -1):
        pad = [(0, 0)] * blurred.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(blurred, pad, mode="symmetric")
        size = blurred.shape[axis]
        blurred = sum(weight * np.take(padded, np.arange(shift, shift + size), axis=axis)
                      for shift, weight in enumerate(kernel))
    return blurred


def is_pixel_level(saliency: np.ndarray) -> bool:
    """Whether a map `(H, W)` changes from pixel to pixel (gradient-like) rather than varying
    smoothly over regions (occlusion, masks): its mean |horizontal neighbour difference| is at
    least `PIXEL_LEVEL_ROUGHNESS` times its mean absolute deviation from the median."""
    values = np.nan_to_num(np.asarray(saliency, dtype=np.float64))
    if values.ndim < 2 or values.shape[-1] < 2:
        return False
    spread = np.abs(values - np.median(values)).mean()
    if spread == 0:
        return False
    return bool(np.abs(np.diff(values, axis=-1)).mean() >= PIXEL_LEVEL_ROUGHNESS * spread)


@dataclass(frozen=True)
class DisplaySettings:
    """How maps are drawn: `view` (one of `VIEWS`), overlay `opacity` (0–1), the colour clip
    `percentile` (90–100 of |map|), `smoothing` σ in pixels for pixel-level maps (0: off), and
    whether all maps share one colour scale. Checked on creation (ValueError says what is wrong)."""

    view: str = "overlay"
    opacity: float = DEFAULT_OPACITY
    percentile: float = DISPLAY_PERCENTILE
    smoothing: float = 0.0
    shared: bool = False

    VIEWS: ClassVar[tuple[str, ...]] = VIEWS
    PERCENTILE_RANGE: ClassVar[tuple[float, float]] = PERCENTILE_RANGE
    SMOOTHING_RANGE: ClassVar[tuple[float, float]] = SMOOTHING_RANGE

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}; got {self.view!r}")
        for name, value, (low, high) in (("opacity", self.opacity, (0.0, 1.0)),
                                         ("percentile", self.percentile, PERCENTILE_RANGE),
                                         ("smoothing", self.smoothing, SMOOTHING_RANGE)):
            if not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{name} must be a number from {low:g} to {high:g}; got {value!r}")

    def smooths(self, saliency: np.ndarray) -> bool:
        """Whether this map is drawn smoothed: smoothing is on and the map is pixel-level."""
        return self.smoothing > 0 and is_pixel_level(saliency)

    def shown(self, saliency: np.ndarray) -> np.ndarray:
        """The map `(H, W)` as drawn: smoothed where `smooths`, else an unchanged copy (float64).
        Never the raw map itself, so nothing drawn can change what is stored or exported."""
        return smooth_for_display(saliency, self.smoothing if self.smooths(saliency) else 0.0)

    def peak(self, shown: np.ndarray) -> float:
        """Where the colour scale of one drawn map tops out (`display_peak` at `percentile`)."""
        return display_peak(shown, self.percentile)

    def shared_peak(self, shown_maps: list[np.ndarray]) -> float | None:
        """The one peak of every drawn map when the scale is shared (the largest), else None."""
        if not self.shared or not shown_maps:
            return None
        return max(self.peak(m) for m in shown_maps)
