"""The first screen: which maps the Explore page starts with, and at which settings.

One map or more of every family the product is about (linear, signed, nonlinear, mask,
occlusion) and Grad-CAM (one forward and one partial backward pass); the surrogate maps (hundreds
of forward passes) wait for a click. Each at settings chosen so that on a 2-core CPU with EfficientNet-Lite0 at 224²
every map shows a first picture within 1.5 s (with previews, the maps run side by side) and the
whole panel is final within 10 s. `python -m engines.bench.lane` measures both; the README
lists what each costs. Settings not named keep the registry's defaults.
"""

from __future__ import annotations

FIRST_SCREEN: dict[str, dict] = {
    "gradient": {},
    "integrated_gradients": {"steps": 16},
    "positive": {},
    "active": {"rivals": 9},
    "secant": {"patch": 32},
    "oise": {"queries": 96, "chains": 8},  # 8 masks a step: its first picture after 8 passes, not 16
    "occlusion": {"window": 48, "stride": 32},
    "grad_cam": {},
}
"""Method → the settings it starts with on the first screen, in the order shown."""

FIRST_SCREEN_SIDE = 224
"""The image side (pixels) the first screen's sizes are chosen for."""
PIXEL_SETTINGS = ("patch", "window", "stride")


def first_screen_settings(method: str, size: tuple[int, int]) -> dict:
    """`FIRST_SCREEN[method]` for an image of `size` (H, W): sizes in pixels (patch, window,
    stride) scaled by the shorter side over 224, at least 1 and at most that side, so the same
    number of regions and windows covers a smaller or larger image. {} for other methods."""
    side = min(size)
    settings = {}
    for name, value in FIRST_SCREEN.get(method, {}).items():
        if name in PIXEL_SETTINGS:
            value = max(1, min(side, round(value * side / FIRST_SCREEN_SIDE)))
        settings[name] = value
    return settings
