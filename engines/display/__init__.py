"""Turning maps into pictures (pure numpy): colour scales, colour limits, display smoothing and
overlays, for the dashboard and the audit. Nothing here changes a map; it only draws it."""
