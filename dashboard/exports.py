"""Files people take away: the map grid as PNG, maps as .npz, metrics as CSV/JSON, and a
self-contained HTML report for stakeholders. Bytes in memory; no engine calls, no maths."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dashboard import views


def png_bytes(array: np.ndarray) -> bytes:
    """An `(H, W, 3)` uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def picture(image: np.ndarray, saliency: np.ndarray, signed: bool, display: views.DisplaySettings,
            shared_max: float | None = None) -> np.ndarray:
    """One map `(H, W)` as the page draws it, `(H, W, 3)` uint8: over the image in the overlay view,
    on its own otherwise; clipped and smoothed for the eye as `display` says (the map is unchanged)."""
    shown = display.shown(saliency)
    if display.view == "overlay":
        return views.overlay_rgb(image, shown, signed=signed, opacity=display.opacity, shared_max=shared_max,
                                 percentile=display.percentile)
    return views.heatmap_rgb(shown, signed=signed, shared_max=shared_max, percentile=display.percentile)


def grid_png(image: np.ndarray, maps: dict[str, tuple[str, np.ndarray, bool]], *,
             display: views.DisplaySettings = views.DisplaySettings(), shared_max: float | None = None,
             tile: int = 256, columns: int = 3) -> bytes:
    """The maps as one PNG: `maps` is {name: (label, map (H, W), signed)}; each tile is `tile`
    pixels wide with its label above, drawn as the page draws them (`display`)."""
    label_height = 22
    rows = max(1, -(-len(maps) // columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (label, saliency, signed) in enumerate(maps.values()):
        tile_picture = Image.fromarray(picture(image, saliency, signed, display, shared_max))
        tile_picture = tile_picture.resize((tile, round(tile * tile_picture.height / tile_picture.width)), Image.NEAREST)
        left, top = (index % columns) * tile, (index // columns) * (tile + label_height)
        draw.text((left + 4, top + 4), label, fill="black")
        sheet.paste(tile_picture, (left, top + label_height))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def maps_npz(maps: dict[str, np.ndarray], metadata: dict[str, Any]) -> bytes:
    """Raw maps (one array per method) and the settings that made them, as a NumPy .npz."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(m, dtype=np.float32) for name, m in maps.items()},
                        metadata=np.array(json.dumps(metadata, default=str)))
    return buffer.getvalue()


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of metrics (one dict per method) as CSV text, columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def metrics_json(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> str:
    return json.dumps({"metadata": metadata, "metrics": rows}, indent=2, default=str)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_report(*, title: str, image: np.ndarray, model: str, prediction: list[tuple[str, float]], target: str,
                maps: dict[str, tuple[str, np.ndarray, bool]], settings: dict[str, dict], metrics: list[dict[str, Any]],
                display: views.DisplaySettings = views.DisplaySettings(), when: dt.datetime | None = None) -> str:
    """One self-contained HTML file (images inline): the image, model and version, the prediction,
    each map (drawn as `display` says) with its settings, the metrics table and the date. Every
    text is escaped."""
    when = when or dt.datetime.now(dt.timezone.utc)
    e = html.escape
    top = "".join(f"<tr><td>{e(name)}</td><td>{p:.1%}</td></tr>" for name, p in prediction)
    figures = "".join(
        f"<figure><img src='{_data_uri(png_bytes(picture(image, m, s, display)))}' "
        f"alt='{e(label)}'><figcaption><b>{e(label)}</b><br><code>{e(json.dumps(settings.get(name, {})))}</code>"
        f"</figcaption></figure>"
        for name, (label, m, s) in maps.items()
    )
    table = ""
    if metrics:
        columns = list(dict.fromkeys(key for row in metrics for key in row))
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(_cell(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in metrics
        )
        table = f"<h2>Metrics</h2><table><tr>{head}</tr>{body}</table>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
figure{{display:inline-block;width:300px;margin:8px;vertical-align:top}} figure img{{width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
code{{font-size:11px;word-break:break-all}}</style></head><body>
<h1>{e(title)}</h1>
<p>Model: <b>{e(model)}</b>. Explained class: <b>{e(target)}</b>. Made {e(when.strftime('%Y-%m-%d %H:%M UTC'))}
with the saliency explorer.</p>
<figure><img src='{_data_uri(png_bytes(image))}' alt='input image'><figcaption>The image as the model sees it</figcaption></figure>
<h2>Prediction</h2><table><tr><th>class</th><th>probability</th></tr>{top}</table>
<h2>Maps</h2>{figures}
{table}
</body></html>"""


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
