"""Explore: pick an image and a model, then compare saliency maps side by side."""

from __future__ import annotations

import json

import streamlit as st

import engines
from dashboard import resources, state, views, widgets

state.init()
st.title("Explore saliency")
st.caption(
    "Pick a sample or upload an image, pick a model and a target class, and compare how each "
    "method explains the model's score for that class."
)

# ---------------------------------------------------------------- model and device (sidebar)
with st.sidebar:
    st.header("Model")
    names = list(engines.catalogue())

    def model_label(name: str) -> str:
        ready, _ = resources.model_status(name)
        return name if ready else f"{name} (weights not here)"

    model_name = st.selectbox("Model", names, format_func=model_label, key=state.MODEL)
    ready, status = resources.model_status(model_name)
    st.caption(status)
    device = st.selectbox("Device", ["auto", *engines.available_devices()], key=state.DEVICE,
                          help="auto takes CUDA, then MPS, then the CPU.")

try:
    loaded = resources.model(model_name, device)
except (engines.ModelUnavailable, ValueError) as error:
    st.error(f"{model_name} cannot be used here. {error} Pick another model in the sidebar.")
    st.stop()
st.sidebar.caption(f"{loaded.describe()} on **{loaded.device}**; one forward + backward pass ≈ "
                   f"{loaded.pass_seconds * 1000:.0f} ms.")

# ---------------------------------------------------------------- image
samples = engines.sample_images()
left, right = st.columns([1, 1])
with left:
    sample = st.selectbox("Sample image", list(samples), key=state.SAMPLE,
                          index=list(samples).index("chelsea") if "chelsea" in samples else 0)
    upload = st.file_uploader(
        "…or upload your own", type=[f.lower() for f in engines.images.SUPPORTED_FORMATS] + ["jpg", "jpeg", "tif"],
        key=state.UPLOAD, max_upload_size=engines.images.MAX_UPLOAD_BYTES >> 20,
        help=f"Up to {engines.images.MAX_PIXELS // 1_000_000} megapixels; the model sees a centre crop.",
    )
data, source = samples[sample].read_bytes(), f"sample “{sample}”"
if upload is not None:
    try:
        upload_data = engines.images.read_bytes(upload)
        engines.read_image(upload_data)
        data, source = upload_data, f"your upload “{upload.name}”"
    except engines.ImageError as error:
        st.error(f"{error} Showing the {source} meanwhile.")
digest = engines.image_digest(data)
x = resources.image_bytes_to_tensor(model_name, device, digest, data)

# ---------------------------------------------------------------- prediction and target
prediction = resources.prediction(model_name, device, digest, x)
top = prediction.top(5)
with left:
    st.image(views.image_array(x), caption=f"{source}, as the model sees it ({x.shape[-1]}×{x.shape[-2]})",
             width=320)
with right:
    st.subheader("Top-5 predictions")
    classes = loaded.categories
    order = [i for i, _ in top] + sorted(set(range(len(classes))) - {i for i, _ in top}, key=lambda i: classes[i])
    target = st.selectbox("Target class (explain this class)", order, key=state.TARGET,
                          format_func=lambda i: f"{classes[i]} ({prediction.probabilities[0, i]:.1%})",
                          help="Maps explain the logit of this class. Other classes matter too: try one.")
    highlight = next((rank for rank, (i, _) in enumerate(top) if i == target), None)
    st.plotly_chart(views.top_classes_bar([classes[i] for i, _ in top], [p for _, p in top], highlight),
                    width="stretch", key="top5")

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
        results = resources.maps(model_name, device, digest, x, tuple(chosen), json.dumps(settings, sort_keys=True),
                                 int(target))
except (ValueError, engines.OutOfMemory) as error:
    st.error(f"These settings cannot run: {error}")
    st.stop()

# ---------------------------------------------------------------- the grid
st.markdown(f"Maps explain the class **{classes[target]}** for {source}, on {loaded.spec.label}.")
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
