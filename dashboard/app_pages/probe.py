"""Probe the nonlinearity: click a region and see how the model's score really responds when the
region is brightened or darkened, against the straight line the gradient predicts. The
nonlinearity map beside it shows, for every region, how far the two part: where the gradient
misleads. Our nonlinear family, after Rosenzweig et al. (docs/methods.md §3b)."""

from __future__ import annotations

import json
import math

import streamlit as st

import engines
from dashboard import resources, state, views
from dashboard.selection import current

PATCHES = (4, 8, 16, 32, 56)  # region sizes offered, in pixels (those up to half the image's side)
AUTO_SECONDS = 20.0  # a nonlinearity map estimated to take longer waits for a click on a button
CURVE_POINTS = 21  # steps t of the probed region's response curve, one forward pass each
MAP_POINTS = engines.method_info("nonlinearity").defaults()["points"]


def patch_options(height: int, width: int) -> list[int]:
    return [p for p in PATCHES if p <= min(height, width) // 2] or [min(height, width)]


def default_patch(options: list[int], height: int, width: int) -> int:
    """The coarsest region size that still cuts the image into at least 7 regions a side. On a
    224² image that is 32 pixels: 49 regions, about 200 forward passes for the map, seconds on
    a CPU, where 16 pixels would take 196 regions and ~785 passes (most of a minute). A finer
    grid is one step away, with its estimate shown before it runs."""
    fine_enough = [p for p in options if math.ceil(min(height, width) / p) >= 7]
    return max(fine_enough) if fine_enough else min(options)


def apply_click(patch: int, rows: int, cols: int) -> None:
    """A new click on the region figure chooses the region under it (before the number inputs
    are drawn, so they show it). A click is applied once: the figure keeps its selection."""
    event = st.session_state.get(state.PROBE_PICKER)
    points = (event or {}).get("selection", {}).get("points", [])
    if not points:
        return
    x, y = float(points[0]["x"]), float(points[0]["y"])
    if (x, y, patch) == st.session_state.get(state.PROBE_LAST_CLICK):
        return
    st.session_state[state.PROBE_LAST_CLICK] = (x, y, patch)
    st.session_state[state.PROBE_ROW] = min(rows - 1, max(0, int(y // patch)))
    st.session_state[state.PROBE_COL] = min(cols - 1, max(0, int(x // patch)))


def go_to(row: int, col: int) -> None:
    st.session_state[state.PROBE_ROW], st.session_state[state.PROBE_COL] = row, col


selection = current()
loaded, x, classes, target = selection.model, selection.x, selection.classes, selection.target
height, width = (int(s) for s in x.shape[-2:])
st.title("Probe the nonlinearity")
st.caption(
    "A gradient map is a tangent-plane view of the model: it promises that brightening a region a "
    "little moves the class score along a straight line. Here you test that promise on one region "
    "at a time. Our nonlinear family, after Rosenzweig et al. (“When saliency goes off on a "
    "tangent”, 2021); not their exact algorithm, which is not published."
)

# ---------------------------------------------------------------- settings and the region
options = patch_options(height, width)
if st.session_state.get(state.PROBE_PATCH) not in options:
    st.session_state[state.PROBE_PATCH] = default_patch(options, height, width)
st.session_state.setdefault(state.PROBE_SPAN, 0.25)
columns = st.columns(4)
patch = columns[0].select_slider(
    "Region size (pixels)", options, key=state.PROBE_PATCH,
    help="Side of the square regions brightened together. Smaller regions give a finer map that costs more.")
span = columns[1].slider(
    "Largest step ±t (pixel units)", 0.05, 1.0, step=0.05, key=state.PROBE_SPAN,
    help="The region is brightened (t > 0) and darkened (t < 0) by up to this much; pixels stay in [0, 1].")
grid = engines.region_grid(height, width, patch)
apply_click(patch, grid.rows, grid.cols)
for key, last in ((state.PROBE_ROW, grid.rows - 1), (state.PROBE_COL, grid.cols - 1)):
    value = st.session_state.get(key)
    st.session_state[key] = last // 2 if value is None else min(max(int(value), 0), last)
row = int(columns[2].number_input(f"Region row (0–{grid.rows - 1})", 0, grid.rows - 1, step=1, key=state.PROBE_ROW,
                                  help="Or click a region on the figure below."))
col = int(columns[3].number_input(f"Region column (0–{grid.cols - 1})", 0, grid.cols - 1, step=1,
                                  key=state.PROBE_COL, help="Or click a region on the figure below."))

# ---------------------------------------------------------------- the map (cached; costly ones on request)
map_settings = {"span": span, "points": MAP_POINTS, "patch": patch}
settings_json = json.dumps(map_settings, sort_keys=True)
cost = engines.method_info("nonlinearity").cost(map_settings, len(classes), (height, width))
seconds = loaded.estimate_seconds(cost)
wanted = st.session_state.setdefault(state.PROBE_WANTED, [])
wanted_key = [selection.model_name, selection.device, selection.digest, settings_json, target]

left, right = st.columns(2, gap="medium")
region_values = per_pixel = None
with left:
    if seconds > AUTO_SECONDS and wanted_key not in wanted:
        st.info(f"The nonlinearity map of {grid.count} regions needs {cost.forward} forward passes, about "
                f"{seconds:.0f} s on {loaded.device}. A larger region size is quicker.")
        if st.button(f"Compute the nonlinearity map (about {seconds:.0f} s)", key=state.PROBE_COMPUTE):
            wanted.append(wanted_key)
    if seconds <= AUTO_SECONDS or wanted_key in wanted:
        try:
            result = resources.nonlinearity_map(selection.model_name, selection.device, selection.digest, x,
                                                settings_json, target)
        except engines.OutOfMemory as error:
            st.error(f"The nonlinearity map does not fit in memory: {error} Choose a larger region size.")
        except ValueError as error:
            st.error(f"The nonlinearity map cannot run with these settings: {error}")
        else:
            region_values = grid.sum(result.map)[0]  # (R,) NL_r in logits: the map spreads NL_r over r
            per_pixel = grid.totals(result.map)[0].numpy()  # NL_r on every pixel of region r
    title = "Nonlinearity per region: click one to probe it" if per_pixel is not None else "Click a region to probe it"
    picker = st.empty()

# ---------------------------------------------------------------- the probed region's response curve
try:
    with st.spinner(f"Probing region ({row}, {col}): {CURVE_POINTS} forward passes…"):
        curve = resources.response_curve(selection.model_name, selection.device, selection.digest, x, (row, col),
                                         target, span, CURVE_POINTS, patch)
except engines.OutOfMemory as error:
    st.error(f"Probing this region does not fit in memory: {error} Choose a smaller image or another device.")
    st.stop()
except ValueError as error:
    st.error(f"This region cannot be probed: {error} Pick a row and column inside the grid.")
    st.stop()

with left:
    picker.plotly_chart(
        views.region_picker(views.image_array(x), patch, curve.region, title=title, values=per_pixel),
        width="stretch", key=state.PROBE_PICKER, on_select="rerun", selection_mode="points",
        config={"displayModeBar": False},  # a click picks a region: zooming would only get in the way
    )
    if region_values is not None:
        peak = int(region_values.argmax())
        peak_row, peak_col = divmod(peak, grid.cols)
        st.button("Go to the region that departs most", key=state.PROBE_JUMP, on_click=go_to, args=(peak_row, peak_col),
                  help=f"Region ({peak_row}, {peak_col}), nonlinearity {float(region_values[peak]):.3g}.")
with right:
    name = classes[target]
    st.plotly_chart(
        views.response_figure(curve.t.numpy(), curve.scores.numpy(), curve.tangent.numpy(), curve.score,
                              class_name=name, title=f"Region row {row}, column {col}: the {name} score"),
        width="stretch", key="probe.curve",
    )
    metrics = st.columns(3)
    metrics[0].metric("Clean score s(x)", f"{curve.score:.3f}", help=f"The logit of {name} for the unchanged image.")
    metrics[1].metric("Tangent slope", f"{curve.slope:.3g}",
                      help="The gradient summed over the region's pixels and channels: logit per unit of brightness.")
    metrics[2].metric("Nonlinearity", f"{curve.nonlinearity:.3g}",
                      help="This region's widest gap between the true score and the tangent line, in logits.")

st.markdown(
    "**How to read it.** The dashed line is the gradient's promise: brighten (t > 0) or darken (t < 0) "
    "the outlined region and the score should move along it, while the red curve is what the model "
    "really does. Where the curve leaves the line, the gradient misleads: the shaded gap at its widest is "
    "the region's nonlinearity, and the map on the left shows it for every region."
)
notes = [f"Maps and curves explain **{classes[target]}** for {selection.source}, on {loaded.spec.label}."]
if region_values is not None:
    notes.append(
        f"The map samples {MAP_POINTS - 1} steps per region and gives this region "
        f"{float(region_values[grid.index(row, col)]):.3g}; the curve samples {CURVE_POINTS}, so it can find a "
        "slightly wider gap.")
notes.append("The tangent bends where pixels reach black or white, since pixels are clipped to [0, 1].")
st.caption(" ".join(notes))
