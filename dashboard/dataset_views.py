"""The Data set page's figures and its HTML export: arrays and tables in, figures and bytes out.
No engine calls, no maths (the numbers come from `engines.open_audit` and `engines.cluster_class`)."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard import exports, views


def metric_boxes(values: dict[str, list[float]], *, title: str, height: int = 300) -> go.Figure:
    """One box (with every image as a point beside it) per method: `values` is {label: metric values}."""
    figure = go.Figure()
    for index, (label, points) in enumerate(values.items()):
        figure.add_trace(go.Box(y=points, name=label, boxpoints="all", jitter=0.4, pointpos=-1.6, marker_size=4,
                                marker_color=views.PALETTE[index % len(views.PALETTE)],
                                hovertemplate=f"{html.escape(label)}: %{{y:.3f}}<extra></extra>"))
    figure.update_layout(title=dict(text=title, font=dict(size=14)), height=height, showlegend=False,
                         margin=dict(l=0, r=0, t=36, b=0))
    return figure


def spectrum(eigenvalues: np.ndarray, chosen: int, *, height: int = 220) -> go.Figure:
    """The smallest eigenvalues of the maps' graph Laplacian, the chosen number of clusters marked:
    the eigengap (SpRAy's evidence for how many groups there are) is the jump after it."""
    index = np.arange(1, len(eigenvalues) + 1)
    figure = go.Figure(go.Scatter(x=index, y=eigenvalues, mode="lines+markers",
                                  hovertemplate="λ%{x}: %{y:.3f}<extra></extra>"))
    figure.add_vline(x=chosen + 0.5, line_dash="dash", line_color="#d62728")
    figure.update_layout(title=dict(text="Eigenvalues of the maps' graph (gap after the chosen count)",
                                    font=dict(size=13)), height=height, margin=dict(l=0, r=0, t=32, b=0),
                         xaxis=dict(title="index", dtick=1), yaxis=dict(title="eigenvalue"))
    return figure


def tile(image: np.ndarray, saliency: np.ndarray, signed: bool, opacity: float = 0.65) -> np.ndarray:
    """A map over its image as an `(H, W, 3)` array for `st.image`, enlarged with sharp pixels."""
    return views.pixelated(views.overlay_rgb(image, saliency, signed=signed, opacity=opacity), at_least=160)


def _table(rows: list[dict[str, Any]]) -> str:
    e = html.escape
    if not rows:
        return "<p>(none)</p>"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{e(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e(_cell(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _figures(images: list[tuple[np.ndarray, str]]) -> str:
    e = html.escape
    return "".join(f"<figure><img src='{exports._data_uri(exports.png_bytes(picture))}' alt='{e(caption)}'>"
                   f"<figcaption>{e(caption)}</figcaption></figure>" for picture, caption in images)


def html_report(*, title: str, facts: str, tables: list[tuple[str, list[dict[str, Any]]]],
                charts: list[tuple[str, go.Figure]], galleries: list[tuple[str, list[tuple[np.ndarray, str]]]],
                when: dt.datetime | None = None) -> str:
    """The page as one self-contained HTML file: its tables, its plotly figures (interactive,
    plotly.js inline once, so it opens offline) and its image galleries (PNG inline), each
    under its heading. Every text is escaped."""
    when = when or dt.datetime.now(dt.timezone.utc)
    e = html.escape
    parts = [f"<h2>{e(heading)}</h2>{_table(rows)}" for heading, rows in tables]
    for index, (heading, figure) in enumerate(charts):
        parts.append(f"<h2>{e(heading)}</h2>" + figure.to_html(full_html=False, include_plotlyjs="inline" if index == 0
                                                               else False, default_height="320px"))
    parts += [f"<h2>{e(heading)}</h2><div>{_figures(images)}</div>" for heading, images in galleries]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
figure{{display:inline-block;width:170px;margin:6px;vertical-align:top;font-size:12px}} figure img{{width:100%}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}</style>
</head><body>
<h1>{e(title)}</h1>
<p>{e(facts)} Made {e(when.strftime('%Y-%m-%d %H:%M UTC'))} with the saliency explorer.</p>
{''.join(parts)}
</body></html>"""
