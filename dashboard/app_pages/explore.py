"""Explore: pick an image and a model, then compare saliency maps side by side."""

from __future__ import annotations

import json

import streamlit as st

import engines
from dashboard import exports, resources, state, urlstate, views, widgets
from dashboard.selection import current

selection = current()
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
FAMILY_HEADINGS = {"linear": "Linear maps", "signed": "Signed maps", "nonlinear": "Nonlinear maps",
                   "mask": "Mask-optimised maps", "occlusion": "Occlusion maps", "cam": "Class activation maps (CAM)",
                   "surrogate": "Surrogate models (LIME, SHAP)"}
by_family: dict[str, list[str]] = {}
for name in engines.methods():
    by_family.setdefault(engines.method_info(name).family, []).append(name)
# The first screen: a map of every family, at settings that are final within seconds (engines.FIRST_SCREEN).
starting = {family: [m for m in engines.FIRST_SCREEN if m in members] for family, members in by_family.items()}
chosen: list[str] = []
for family, members in by_family.items():
    key = f"{state.METHODS}.{family}"
    if key not in st.session_state:  # a link may have set it already
        st.session_state[key] = starting.get(family, [])
    chosen += st.pills(FAMILY_HEADINGS.get(family, f"{family.capitalize()} maps"), members, selection_mode="multi",
                       format_func=lambda n: engines.method_info(n).label, key=key) or []
# Maps on a layer (CAM) need hooks, which a TorchScript model cannot take: say so where they would be.
layered = [m for m in chosen if any(p.kind == "layer" for p in engines.method_info(m).params)]
if layered:
    try:
        resources.cam_layers(selection.model_name, selection.device)
    except engines.LayerUnavailable as error:
        st.info(f"{', '.join(engines.method_info(m).label for m in layered)}: {error}")
        chosen = [m for m in chosen if m not in layered]
size, seeded_for = tuple(x.shape[-2:]), st.session_state.get(state.FIRST_SCREEN_SIZE)
settings = {}
for name in chosen:  # the first screen's settings, scaled to the image; a link or the person may have set them
    for param, value in engines.first_screen_settings(name, size).items():
        key = state.setting_key(name, param)
        before = engines.first_screen_settings(name, seeded_for).get(param) if seeded_for else None
        if key not in st.session_state or (seeded_for != size and st.session_state[key] == before):
            st.session_state[key] = value  # a new image size moves the values nobody changed
    settings[name] = widgets.settings_form(name, len(classes))
st.session_state[state.FIRST_SCREEN_SIZE] = size
urlstate.publish(selection.model_name, selection.sample, target, chosen, settings)
note = widgets.rivals_note(settings, len(classes))
if note:
    st.caption(note)

with st.sidebar:
    display = widgets.display_settings()  # how maps are drawn; the maps themselves stay raw

if not chosen:
    st.info("Pick at least one method above.")
    st.stop()

# (Comments, not docstrings: Streamlit's magic would print a bare string on the page.)
AUTO_SECONDS = 10.0  # maps expected to take longer wait for a click, so a change never freezes the page
FIRST_SCREEN_SECONDS = 30.0  # ... except the first screen's own maps, which refine in place, up to this
CANCELLABLE_SECONDS = 2.0  # runs expected to take longer show a Cancel button beside their progress bar

settings_json = json.dumps(settings, sort_keys=True)
key = (selection.model_name, selection.device, selection.digest)
todo = resources.missing_maps(*key, tuple(chosen), settings_json, target)
estimate = sum(loaded.estimate_seconds(engines.method_info(m).cost(settings[m], len(classes), tuple(x.shape[-2:])))
               for m in todo)
# The first screen's own maps, at its settings, start by themselves up to FIRST_SCREEN_SECONDS: on a
# busy server their estimate may pass AUTO_SECONDS, but they show previews within a second or so.
first_screen = set(todo) <= set(engines.FIRST_SCREEN) and all(
    settings[m].get(k) == v for m in todo for k, v in engines.first_screen_settings(m, size).items())
cancelled = bool(st.session_state.get(state.CANCEL))  # this rerun comes from the Cancel button: start nothing
run = bool(todo) and not cancelled and estimate <= (FIRST_SCREEN_SECONDS if first_screen else AUTO_SECONDS)
notice = st.empty()  # what is not computed yet and the Compute button; cleared once a run is done
if todo and not run:
    labels = ", ".join(engines.method_info(m).label for m in todo)
    with notice.container():
        if cancelled:
            st.warning("Cancelled: nothing of that run was kept. The maps below were computed before.")
        st.info(f"Not computed yet: {labels}. About {estimate:.0f} s on {loaded.device}.")
        run = st.button(f"Compute (about {estimate:.0f} s)", key=state.COMPUTE, type="primary")
progress_place = st.empty()  # the run's progress bar and Cancel button go here, above the grid

# ---------------------------------------------------------------- the grid
st.markdown(f"Maps explain the class **{classes[target]}** for {selection.source}, on {loaded.spec.label}.")
image = views.image_array(x)
shown = [m for m in chosen if m not in todo] + (todo if run else [])  # maps not asked for yet get no cell
columns = views.grid_columns(display)
grid = st.columns(columns)
cells = {}
for index, name in enumerate(shown):
    with grid[index % columns]:
        cells[name] = st.empty()  # a preview is drawn here while the map refines, then the final map


def draw_preview(explanation: engines.Explanation) -> None:
    """A map that is still refining (or just final), drawn in place as a plain picture; the
    interactive chart replaces it when the whole run is done."""
    info = engines.method_info(explanation.method)
    picture = exports.picture(image, explanation.map[0].numpy(), explanation.signed, display)
    if explanation.progress < 1:
        caption = f"{info.label}: refining, {explanation.progress:.0%} done ({explanation.seconds:.1f} s)"
    else:
        caption = f"{info.label}: final ({explanation.seconds:.1f} s); waiting for the others"
    with cells[explanation.method].container():
        st.image(picture, caption=caption, width="stretch")


if run:
    with progress_place.container():
        if estimate > CANCELLABLE_SECONDS:
            st.button("Cancel", key=state.CANCEL, help="Stops the computation; nothing partial is kept.")
        show_progress, remove_bar = resources.progress_bar(
            f"Computing {len(todo)} maps (about {estimate:.1f} s): passes")
    try:
        resources.maps(*key, x, tuple(todo), settings_json, target, progress=show_progress, preview=draw_preview)
    except (ValueError, engines.OutOfMemory) as error:
        st.error(f"These settings cannot run: {error} Change them above; the other maps are kept.")
    remove_bar()
    progress_place.empty()
    notice.empty()
ready = [m for m in chosen if m not in resources.missing_maps(*key, tuple(chosen), settings_json, target)]
results = resources.maps(*key, x, tuple(ready), settings_json, target)
peak = views.shared_peak([r.map[0].numpy() for r in results.values()], display)
for name in shown:
    if name not in results:  # it failed: its cell is cleared
        cells[name].empty()
        continue
    result, info = results[name], engines.method_info(name)
    with cells[name].container():
        st.plotly_chart(
            views.map_figure(image, result.map[0].numpy(), signed=result.signed, title=info.label, display=display,
                             shared_max=peak),
            width="stretch", key=f"map.{name}",
        )
        st.caption(f"{info.summary} {result.seconds:.2f} s.")

# ---------------------------------------------------------------- export
if results:
    with st.expander("Export: PNG, maps, metrics, report"):
        labelled = {m: (engines.method_info(m).label, r.map[0].numpy(), r.signed) for m, r in results.items()}
        meta = {"model": loaded.describe(), "image": selection.source, "target": classes[target],
                "settings": {m: r.settings for m, r in results.items()}}
        with_metrics = st.checkbox("Include faithfulness metrics (deletion, insertion, allegiance AUC)",
                                   key=state.EXPORT_METRICS, help="Four curves per map: a few seconds each.")
        rows = []
        if with_metrics:
            with st.spinner("Computing the curves…"):
                for m, r in results.items():
                    curves = resources.evaluation_curves(selection.model_name, selection.device, selection.digest,
                                                         x, r.map, m, json.dumps(r.settings, sort_keys=True), target)
                    rows.append({"method": m, **{f"{kind}_auc": float(c.auc[0]) for kind, c in curves.items()}})
            st.dataframe(rows, hide_index=True)
        stem = f"saliency_{selection.model_name}_{classes[target]}".replace(" ", "_")
        c1, c2, c3 = st.columns(3)
        c1.download_button("Map grid (PNG)", exports.grid_png(image, labelled, display=display, shared_max=peak),
                           f"{stem}.png", "image/png", key=state.EXPORT_PNG)
        c2.download_button("Maps (.npz)", exports.maps_npz({m: v[1] for m, v in labelled.items()}, meta),
                           f"{stem}.npz", "application/octet-stream", key=state.EXPORT_NPZ)
        c3.download_button(
            "Report (HTML)",
            exports.html_report(
                title=f"Why {loaded.spec.label} sees “{classes[target]}”", image=image, model=loaded.describe(),
                prediction=[(classes[i], p) for i, p in selection.prediction.top(5)], target=classes[target],
                maps=labelled, settings=meta["settings"], metrics=rows, display=display),
            f"{stem}.html", "text/html", key=state.EXPORT_HTML)
        if rows:
            c1.download_button("Metrics (CSV)", exports.metrics_csv(rows), f"{stem}_metrics.csv", "text/csv",
                               key=state.EXPORT_CSV)
            c2.download_button("Metrics (JSON)", exports.metrics_json(rows, meta), f"{stem}_metrics.json",
                               "application/json", key=state.EXPORT_JSON)
