"""Explore: pick an image and a model, then compare saliency maps side by side."""

from __future__ import annotations

import json

import streamlit as st

import engines
from dashboard import resources, state, views, widgets
from dashboard.selection import sidebar

selection = sidebar()
loaded, x, classes, target = selection.model, selection.x, selection.classes, selection.target
st.title("Explore saliency")
st.caption(
    "Pick a sample or upload an image, a model and a target class in the sidebar, and compare "
    "how each method explains the model's score for that class."
)

left, right = st.columns([1, 1])
with left:
    st.image(views.image_array(x), width=320,
             caption=f"{selection.source}, as the model sees it ({x.shape[-1]}×{x.shape[-2]})")
with right:
    st.subheader("Top-5 predictions")
    top = selection.prediction.top(5)
    highlight = next((rank for rank, (i, _) in enumerate(top) if i == target), None)
    st.plotly_chart(views.top_classes_bar([classes[i] for i, _ in top], [p for _, p in top], highlight),
                    width="stretch", key="top5")
    if highlight is None:
        st.caption(f"The target, {classes[target]}, is outside the top 5 "
                   f"({selection.prediction.probabilities[0, target]:.2%}).")

# ---------------------------------------------------------------- methods and settings
st.subheader("Methods")
by_family: dict[str, list[str]] = {}
for name in engines.methods():
    by_family.setdefault(engines.method_info(name).family, []).append(name)
starting = {"linear": ["gradient", "integrated_gradients"], "signed": ["positive", "negative", "active"]}
chosen: list[str] = []
for family, members in by_family.items():
    chosen += st.pills(f"{family.capitalize()} maps", members, selection_mode="multi",
                       default=starting.get(family, []), format_func=lambda n: engines.method_info(n).label,
                       key=f"{state.METHODS}.{family}") or []
settings = {}
for name in chosen:
    settings[name] = widgets.settings_form(name, len(classes))
note = widgets.rivals_note(settings, len(classes))
if note:
    st.caption(note)

with st.sidebar:
    st.header("Display")
    shared = st.toggle("One colour scale for all maps", key=state.SHARED_SCALE,
                       help="Off: each map is scaled to its own range.")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, key=state.OPACITY, step=0.05)

if not chosen:
    st.info("Pick at least one method above.")
    st.stop()

estimate = sum(loaded.estimate_seconds(engines.method_info(m).cost(settings[m], len(classes), tuple(x.shape[-2:]))) for m in chosen)
try:
    with st.spinner(f"Computing {len(chosen)} maps (about {estimate:.1f} s on {loaded.device})…"):
        results = resources.maps(selection.model_name, selection.device, selection.digest, x, tuple(chosen),
                                 json.dumps(settings, sort_keys=True), target)
except (ValueError, engines.OutOfMemory) as error:
    st.error(f"These settings cannot run: {error}")
    st.stop()

# ---------------------------------------------------------------- the grid
st.markdown(f"Maps explain the class **{classes[target]}** for {selection.source}, on {loaded.spec.label}.")
image = views.image_array(x)
peak = max(views.display_peak(r.map[0].numpy()) for r in results.values()) if shared else None
grid = st.columns(3)
for index, name in enumerate(chosen):
    result = results[name]
    info = engines.method_info(name)
    with grid[index % 3]:
        st.plotly_chart(
            views.overlay(image, result.map[0].numpy(), signed=result.signed, title=info.label, opacity=opacity,
                          shared_max=peak),
            width="stretch", key=f"map.{name}",
        )
        st.caption(f"{info.summary} {result.seconds:.2f} s.")
