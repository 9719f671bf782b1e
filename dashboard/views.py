"""Plotly figures and overlays: pure functions, arrays in, figures out. No engine calls."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

# Colour scales that fade to transparent at zero, so the image shows through where a map is
# silent and the overlay reads as "where", not as a dark veil (inferno-like and RdBu-like hues).
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
    """`(1, 3, H, W)` or `(3, H, W)` tensor in [0, 1] → `(H, W, 3)` uint8 for display."""
    array = np.asarray(x.detach().cpu()).squeeze()
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


def overlay(image: np.ndarray, saliency: np.ndarray, *, signed: bool, title: str, opacity: float = 0.6,
            shared_max: float | None = None, height: int = 340) -> go.Figure:
    """The map over the image: diverging scale centred at zero if signed, sequential otherwise.
    Hovering shows the map's value under the pointer."""
    low, high = color_limits(saliency, signed, shared_max)
    figure = go.Figure()
    figure.add_trace(go.Image(z=image, hoverinfo="skip"))
    figure.add_trace(
        go.Heatmap(
            z=saliency, zmin=low, zmax=high, zmid=0 if signed else None,
            colorscale=DIVERGING if signed else SEQUENTIAL, opacity=opacity,
            hovertemplate="x %{x}, y %{y}<br>value %{z:.4g}<extra></extra>",
            colorbar=dict(thickness=10, len=0.9),
        )
    )
    figure.update_layout(
        title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=0, r=0, t=32, b=0),
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return figure


def top_classes_bar(names: list[str], probabilities: list[float], highlight: int | None = None) -> go.Figure:
    """Horizontal bars of the top classes' probabilities, the chosen target highlighted."""
    colors = ["#d62728" if i == highlight else "#1f77b4" for i in range(len(names))]
    figure = go.Figure(
        go.Bar(x=probabilities, y=names, orientation="h", marker_color=colors,
               text=[f"{p:.1%}" for p in probabilities], textposition="auto",
               hovertemplate="%{y}: %{x:.2%}<extra></extra>")
    )
    figure.update_layout(height=40 + 32 * len(names), margin=dict(l=0, r=0, t=8, b=0), xaxis=dict(range=[0, 1]))
    figure.update_yaxes(autorange="reversed")
    return figure
