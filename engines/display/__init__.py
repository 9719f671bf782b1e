"""Turning maps into pictures (pure numpy): colour scales and overlays, for the dashboard and the audit."""
