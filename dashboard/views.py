"""Plotly figures and overlays: pure functions, arrays in, figures out. No engine calls."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# The colouring and display maths are shared with the audit command (`python -m engines.audit`),
# so they live in engines/display/ (pure numpy); the pages reach them through these names.
from engines import (  # noqa: F401
    DIVERGING,
    SEQUENTIAL,
    DisplaySettings,
    color_limits,
    colour_scale,
    display_peak,
    heatmap_rgb,
    image_array,
    overlay_rgb,
)


def _heatmap(saliency: np.ndarray, low: float, high: float, signed: bool, *, transparent: bool, opacity: float,
             value: str) -> go.Heatmap:
    return go.Heatmap(
        z=saliency, zmin=low, zmax=high, zmid=0 if signed else None,
        colorscale=colour_scale(signed, transparent=transparent), opacity=opacity,
        hovertemplate="x %{x}, y %{y}<br>" + value + " %{z:.4g}<extra></extra>",
        colorbar=dict(thickness=10, len=0.9),
    )


def _frame(figure: go.Figure, title: str, height: int) -> go.Figure:
    figure.update_layout(
        title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=0, r=0, t=32, b=0),
        plot_bgcolor="rgba(0,0,0,0)",
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return figure


def overlay(image: np.ndarray, saliency: np.ndarray, *, signed: bool, title: str,
            opacity: float = DisplaySettings.opacity, shared_max: float | None = None, height: int = 340,
            percentile: float = DisplaySettings.percentile, value: str = "value") -> go.Figure:
    """The map over the image: diverging scale centred at zero if signed, sequential otherwise,
    both fading to transparent at zero; the scale clipped at `percentile` of |map| (or at
    `shared_max`). Hovering shows the map's `value` under the pointer."""
    low, high = color_limits(saliency, signed, shared_max, percentile)
    figure = go.Figure()
    figure.add_trace(go.Image(z=image, hoverinfo="skip"))
    figure.add_trace(_heatmap(saliency, low, high, signed, transparent=True, opacity=opacity, value=value))
    return _frame(figure, title, height)


def heatmap(saliency: np.ndarray, *, signed: bool, title: str, shared_max: float | None = None, height: int = 340,
            percentile: float = DisplaySettings.percentile, value: str = "value") -> go.Figure:
    """The map on its own on the opaque scale (no image under it), clipped as `overlay` is."""
    low, high = color_limits(saliency, signed, shared_max, percentile)
    figure = go.Figure(_heatmap(saliency, low, high, signed, transparent=False, opacity=1.0, value=value))
    return _frame(figure, title, height)


def side_by_side(image: np.ndarray, saliency: np.ndarray, *, signed: bool, title: str,
                 shared_max: float | None = None, height: int = 300, percentile: float = DisplaySettings.percentile,
                 value: str = "value") -> go.Figure:
    """The image and, beside it, the map on its own (opaque scale); the two panels share their
    axes, so zooming or panning one moves the other."""
    low, high = color_limits(saliency, signed, shared_max, percentile)
    figure = make_subplots(rows=1, cols=2, shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.02)
    figure.add_trace(go.Image(z=image, hoverinfo="skip"), row=1, col=1)
    figure.add_trace(_heatmap(saliency, low, high, signed, transparent=False, opacity=1.0, value=value), row=1, col=2)
    _frame(figure, title, height)
    figure.update_xaxes(matches="x", row=1, col=2)
    figure.update_yaxes(scaleanchor="x", row=1, col=1)
    figure.update_yaxes(scaleanchor="x2", row=1, col=2)
    return figure


def map_figure(image: np.ndarray, saliency: np.ndarray, *, signed: bool, title: str, display: DisplaySettings,
               shared_max: float | None = None, height: int = 340) -> go.Figure:
    """One map drawn as `display` says: its view (overlay, heat map, side by side), opacity and
    colour clip, and smoothed for the eye where it is pixel-level and smoothing is on (the
    title and the hover say so). `saliency` itself is never changed."""
    shown = display.shown(saliency)
    smoothed = display.smooths(saliency)
    if smoothed:
        title = f"{title} <span style='font-size:11px;color:#777'>(shown smoothed, σ {display.smoothing:g} px)</span>"
    common = dict(signed=signed, title=title, shared_max=shared_max, percentile=display.percentile,
                  value="smoothed value" if smoothed else "value")
    if display.view == "heat map":
        return heatmap(shown, height=height, **common)
    if display.view == "side by side":
        return side_by_side(image, shown, height=min(height, 300), **common)  # two panels: each half as wide
    return overlay(image, shown, opacity=display.opacity, height=height, **common)


def grid_columns(display: DisplaySettings) -> int:
    """Maps per row of the grid: two when each shows the image beside its map, else three."""
    return 2 if display.view == "side by side" else 3


def shared_peak(maps: list[np.ndarray], display: DisplaySettings) -> float | None:
    """The one colour limit of every map as drawn when `display` shares the scale, else None."""
    return display.shared_peak([display.shown(m) for m in maps])


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


def curves_chart(lines: list[tuple[str, np.ndarray, np.ndarray]], marker: float, *, title: str, y_title: str,
                 live: tuple[float, float, str] | None = None, steps: bool = False, height: int = 320) -> go.Figure:
    """Curves over the fraction of pixels, one line per `(name, fractions, values)`, with a dashed
    vertical marker at `marker` (a fraction in [0, 1]) and, where given, the `live` point
    `(fraction, value, label)` of the slider's own occlusion. `steps` draws step lines (0/1 values)."""
    figure = go.Figure()
    for name, fractions, values in lines:
        figure.add_trace(go.Scatter(
            x=fractions, y=values, name=name, mode="lines+markers" if steps else "lines",
            line=dict(shape="hv" if steps else "linear", width=2), marker=dict(size=5),
            hovertemplate="%{x:.0%} hidden: %{y:.3f}<extra>" + name + "</extra>",
        ))
    if live is not None:
        figure.add_trace(go.Scatter(
            x=[live[0]], y=[live[1]], name=live[2], mode="markers",
            marker=dict(size=11, color="#d62728", symbol="diamond", line=dict(width=1, color="white")),
            hovertemplate="%{x:.0%} hidden: %{y:.3f}<extra>" + live[2] + "</extra>",
        ))
    figure.add_vline(x=marker, line=dict(color="#555", dash="dash", width=1.5))
    figure.update_layout(
        title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=0, r=0, t=36, b=0),
        legend=dict(orientation="h", yanchor="top", y=-0.12, x=0), hovermode="closest",
    )
    figure.update_xaxes(range=[0, 1], tickformat=".0%")  # pixels hidden: the page's caption says so
    figure.update_yaxes(range=[-0.05, 1.05], title=dict(text=y_title, font=dict(size=12)))
    return figure


def box_picker(image: np.ndarray, box: tuple[int, int, int, int] | None = None, height: int = 300) -> go.Figure:
    """The image `(H, W, 3)` in pixel coordinates (x = column, y = row, pixel centres at integers)
    for dragging a box over (box-select drag mode), with the current `box` `(row0, row1, col0, col1)`
    (half-open) outlined. Hovering shows the row and column under the pointer."""
    h, w = image.shape[:2]
    figure = go.Figure(go.Image(z=image, hovertemplate="row %{y}, column %{x}<extra></extra>"))
    if box is not None:
        row0, row1, col0, col1 = box
        figure.add_shape(type="rect", x0=col0 - 0.5, x1=col1 - 0.5, y0=row0 - 0.5, y1=row1 - 0.5,
                         line=dict(color="#ff2b2b", width=2))
    figure.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), dragmode="select")
    figure.update_xaxes(visible=False, range=[-0.5, w - 0.5])
    figure.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x")
    return figure


def box_from_ranges(x_range: tuple[float, float], y_range: tuple[float, float], height: int,
                    width: int) -> tuple[int, int, int, int]:
    """The half-open pixel box `(row0, row1, col0, col1)` of the pixels whose centres lie inside a
    dragged rectangle given in `box_picker`'s coordinates (in any order), clipped to the image;
    at least the one pixel nearest the rectangle's centre."""

    def span(a: float, b: float, size: int) -> tuple[int, int]:
        low, high = sorted((float(a), float(b)))
        first, last = max(0, int(np.ceil(low))), min(size - 1, int(np.floor(high)))
        if last < first:
            first = last = int(np.clip(round((low + high) / 2), 0, size - 1))
        return first, last + 1

    rows, cols = span(*y_range, height), span(*x_range, width)
    return rows[0], rows[1], cols[0], cols[1]


def pixelated(image: np.ndarray, at_least: int = 256) -> np.ndarray:
    """`(H, W, 3)` enlarged by a whole factor (each pixel repeated) so its shorter side is at least
    `at_least`: small images keep crisp pixels instead of the browser's blur."""
    factor = max(1, -(-at_least // min(image.shape[:2])))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


# ---------------------------------------------------------------- probe and evaluate pages

OUTLINE = "#00e5ff"
"""Outline of the probed region: a cyan that stands out on photos and on the sequential scale."""
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def region_picker(image: np.ndarray, patch: int, chosen: tuple[int, int, int, int], *, title: str,
                  values: np.ndarray | None = None, opacity: float = 0.6, height: int = 380) -> go.Figure:
    """The image cut into `patch`-pixel regions, the `chosen` one `(row0, row1, col0, col1)` outlined.

    `values` `(H, W)` (optional) is a non-negative value per pixel, shown over the image on the
    sequential scale. Streamlit reports clicks on scatter points only (not on images or
    heatmaps), so a near-invisible square marker sits on every region's centre; a click gives
    its x, y in pixels, and `customdata` holds the region's (row, col) and its value.
    """
    h, w = image.shape[:2]
    rows, cols = -(-h // patch), -(-w // patch)
    figure = go.Figure()
    figure.add_trace(go.Image(z=image, hoverinfo="skip"))
    if values is not None:
        figure.add_trace(go.Heatmap(
            z=values, zmin=0, zmax=color_limits(values, signed=False)[1], colorscale=SEQUENTIAL, opacity=opacity,
            hoverinfo="skip", colorbar=dict(thickness=10, len=0.9, title=dict(text="logit", side="right")),
        ))
    centres = [((min(h, (i + 1) * patch) + i * patch - 1) / 2, (min(w, (j + 1) * patch) + j * patch - 1) / 2, i, j)
               for i in range(rows) for j in range(cols)]
    region_values = [float(values[int(y), int(x)]) if values is not None else float("nan") for y, x, _, _ in centres]
    size = max(6.0, 0.9 * patch * (height - 40) / max(h, w))  # about one region on screen, in px
    invisible = dict(marker=dict(opacity=0.02))
    figure.add_trace(go.Scatter(
        x=[c[1] for c in centres], y=[c[0] for c in centres], mode="markers", showlegend=False,
        marker=dict(symbol="square", size=size, color="white", opacity=0.02),
        selected=invisible, unselected=invisible,
        customdata=[[i, j, v] for (_, _, i, j), v in zip(centres, region_values)],
        hovertemplate=("region row %{customdata[0]}, col %{customdata[1]}"
                       + ("<br>nonlinearity %{customdata[2]:.3g}" if values is not None else "")
                       + "<br>click to probe it<extra></extra>"),
    ))
    lines = [dict(type="line", x0=j * patch - 0.5, x1=j * patch - 0.5, y0=-0.5, y1=h - 0.5) for j in range(1, cols)]
    lines += [dict(type="line", y0=i * patch - 0.5, y1=i * patch - 0.5, x0=-0.5, x1=w - 0.5) for i in range(1, rows)]
    for line in lines:
        figure.add_shape(**line, line=dict(color="rgba(255,255,255,0.35)", width=1))
    r0, r1, c0, c1 = chosen
    figure.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                     line=dict(color=OUTLINE, width=3))
    figure.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                         margin=dict(l=0, r=0, t=32, b=0), clickmode="event+select", dragmode=False)
    figure.update_xaxes(visible=False, range=[-0.5, w - 0.5])
    figure.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x")
    return figure


def response_figure(t: np.ndarray, scores: np.ndarray, tangent: np.ndarray, score: float, *, class_name: str,
                    title: str, height: int = 380) -> go.Figure:
    """A region's true response `scores` against the gradient's `tangent`, both over the steps
    `t`; the gap between them is shaded, and the clean image (t = 0, `score`) is marked."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(
        x=t, y=tangent, name="tangent line (what the gradient predicts)", mode="lines",
        line=dict(color="#1f77b4", dash="dash", width=2),
        hovertemplate="t %{x:.3f}<br>tangent %{y:.4g}<extra></extra>",
    ))
    figure.add_trace(go.Scatter(
        x=t, y=scores, name="true score (what the model does)", mode="lines+markers",
        line=dict(color="#d62728", width=2), marker=dict(size=5), fill="tonexty", fillcolor="rgba(214,39,40,0.15)",
        hovertemplate="t %{x:.3f}<br>score %{y:.4g}<extra></extra>",
    ))
    figure.add_trace(go.Scatter(
        x=[0.0], y=[score], name="clean image (t = 0)", mode="markers",
        marker=dict(color="black", size=10, symbol="circle-open", line=dict(width=2)),
        hovertemplate="clean image<br>score %{y:.4g}<extra></extra>",
    ))
    figure.update_layout(
        title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=0, r=0, t=32, b=0),
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0, traceorder="normal"),
        xaxis_title="brightness added to the region, t (pixel units)", yaxis_title=f"logit of {class_name}",
    )
    return figure


def metric_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str, y_title: str,
                  x_title: str = "fraction of pixels", shape: str = "linear", height: int = 300) -> go.Figure:
    """One line per method: `curves` maps a label to its `(fractions, values)`; values in [0, 1]."""
    figure = go.Figure()
    dashes = ("solid", "dash", "dot", "dashdot")  # lines that coincide (allegiance curves often do) stay visible
    for index, (label, (fractions, values)) in enumerate(curves.items()):
        figure.add_trace(go.Scatter(
            x=fractions, y=values, name=label, mode="lines",
            line=dict(color=PALETTE[index % len(PALETTE)], width=2.5 if index == 0 else 2, shape=shape,
                      dash=dashes[index % len(dashes)]),
            hovertemplate=f"{label}<br>%{{x:.1%}} of pixels: %{{y:.3f}}<extra></extra>",
        ))
    figure.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                         margin=dict(l=0, r=0, t=32, b=0), xaxis_title=x_title, yaxis_title=y_title,
                         yaxis=dict(range=[-0.03, 1.03]), xaxis=dict(range=[0, 1], tickformat=".0%"),
                         legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    return figure


def randomisation_figure(layers: list[str], spearman: np.ndarray, ssim: np.ndarray, *, title: str,
                         height: int = 300) -> go.Figure:
    """Similarity to the original map after each cumulative randomisation step (`layers`: what
    step i re-initialised, top layer first); step 0 is the original model (similarity 1)."""
    steps = list(range(len(layers) + 1))
    names = ["original weights", *layers]
    figure = go.Figure()
    for label, values, color in (("Spearman rank correlation of |map|", spearman, "#1f77b4"),
                                 ("SSIM", ssim, "#ff7f0e")):
        figure.add_trace(go.Scatter(
            x=steps, y=[1.0, *values], name=label, mode="lines+markers", line=dict(color=color, width=2),
            customdata=names, hovertemplate=f"{label}<br>up to %{{customdata}}: %{{y:.3f}}<extra></extra>",
        ))
    figure.add_hline(y=0, line=dict(color="#999", width=1, dash="dot"))
    finite = np.concatenate([np.asarray(spearman, float), np.asarray(ssim, float)])
    finite = finite[np.isfinite(finite)]
    low = min(-0.2, float(finite.min()) - 0.05) if finite.size else -0.2
    figure.update_layout(
        title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=0, r=0, t=32, b=0),
        yaxis=dict(range=[low, 1.05], title="similarity to the original map"),
        xaxis=dict(title="layers randomised, from the output down", tickmode="array", tickvals=steps,
                   ticktext=["none"] + [str(s) for s in steps[1:]]),
        legend=dict(orientation="h", yanchor="top", y=-0.3, xanchor="left", x=0),
    )
    return figure
