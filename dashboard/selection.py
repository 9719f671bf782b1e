"""The sidebar every page shares: model, device, image and target class.

The entry point (`app.py`) renders it on every run before the page, because Streamlit keeps a
widget's value across pages only for widgets the entry point renders; pages then take the
result with `current()`. A page run on its own (as in its tests) renders the sidebar itself.
The target resets to the new top-1 class whenever the model or the image changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
import torch

import engines
from dashboard import resources, state, urlstate


@dataclass
class Selection:
    """What the pages work on: the loaded model, the image as the model sees it, its prediction."""

    model_name: str
    device: str
    model: engines.LoadedModel
    x: torch.Tensor
    digest: str
    source: str
    sample: str
    prediction: engines.Prediction
    target: int

    @property
    def classes(self) -> list[str]:
        return self.model.categories

    def class_name(self, index: int) -> str:
        return self.classes[index]


def _model_label(name: str) -> str:
    own = st.session_state.get(state.CUSTOM_MODELS, {})
    if name in own:
        return own[name]
    ready, _ = resources.model_status(name)
    return name if ready else f"{name} (weights not here)"


def _floats(text: str, what: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) != 3:
        raise engines.ModelFileError(f"{what} needs three numbers (one per colour channel), e.g. 0.485 0.456 0.406.")
    return values


_WEIGHTS, _SCRIPT = "Weights for a catalogue architecture (safetensors)", "TorchScript (checked before it runs)"


def _own_model(device: str) -> None:
    """The form for a person's own model, two ways: safetensors weights for a catalogue
    architecture (no code runs from the file), or a TorchScript file that is checked (pure tensor
    operations only) and first run in a separate process with time and memory limits. A loaded
    one joins the model list. The server can turn this off (`SALIENCY_OWN_MODELS=off`)."""
    with st.expander("Use your own model"):
        if not resources.own_models_allowed():
            st.caption(f"Own models are turned off on this server ({resources.OWN_MODELS_ENV}=off).")
            return
        kind = st.radio("What you have", [_WEIGHTS, _SCRIPT], key=state.CUSTOM_KIND)
        cap = st.get_option("server.maxUploadSize")
        if kind == _WEIGHTS:
            architecture = st.selectbox("Architecture", list(engines.OWN_ARCHITECTURES), key=state.CUSTOM_ARCH)
            spec = engines.catalogue()[architecture]
            st.caption(f"A safetensors file of `model.state_dict()` for a {spec.label} with your number of classes "
                       f"(input {spec.input_size} px, its own mean and std). No code runs from the file.")
            types = ["safetensors"]
        else:
            st.caption("A model saved with torch.jit.save. It may use pure tensor operations only (no files, "
                       "printing or image-dependent loops) and is first run apart, with time and memory limits. "
                       "Pickled models are refused: loading them could run any code.")
            types = ["pt", "pth", "ts", "zip"]
        data = st.file_uploader("Model file", type=types, key=state.CUSTOM_FILE,
                                help=f"Up to {cap} MB on this server (server.maxUploadSize).")
        classes = st.file_uploader("Class names", type=["txt", "json"], key=state.CUSTOM_CLASSES,
                                   help="One class name per line, or a JSON list of strings.")
        if kind == _SCRIPT:
            size = st.number_input("Input size (pixels)", 8, 2048, 224, key=state.CUSTOM_SIZE)
            mean = st.text_input("Mean (R G B)", "0.485 0.456 0.406", key=state.CUSTOM_MEAN)
            std = st.text_input("Std (R G B)", "0.229 0.224 0.225", key=state.CUSTOM_STD)
        if st.button("Load my model", key=state.CUSTOM_LOAD, disabled=data is None or classes is None):
            try:
                with st.spinner("Checking the model…"):
                    if kind == _WEIGHTS:
                        name = resources.load_own_weights(data.getvalue(), architecture, classes.getvalue(), device)
                    else:
                        name = resources.load_custom_model(data.getvalue(), classes.getvalue(), int(size),
                                                           _floats(mean, "Mean"), _floats(std, "Std"), device)
            except (engines.ModelFileError, ValueError) as error:
                st.error(f"{error}")
                return
            st.session_state.setdefault(state.CUSTOM_MODELS, {})[name] = f"your model ({data.name})"
            st.session_state[state.MODEL_PENDING] = name  # the model list takes it on the rerun
            st.rerun()


def _pick_model() -> tuple[str, str, engines.LoadedModel]:
    st.header("Model")
    device = st.selectbox("Device", ["auto", *engines.available_devices()], key=state.DEVICE,
                          help="auto takes CUDA, then MPS, then the CPU.")
    names = list(engines.catalogue()) + list(st.session_state.get(state.CUSTOM_MODELS, {}))
    if state.MODEL_PENDING in st.session_state:
        st.session_state[state.MODEL] = st.session_state.pop(state.MODEL_PENDING)
    model_name = st.selectbox("Model", names, format_func=_model_label, key=state.MODEL)
    if model_name in engines.catalogue():
        st.caption(resources.model_status(model_name)[1])
    _own_model(device)
    try:
        loaded = resources.model(model_name, device)
    except (engines.ModelUnavailable, ValueError) as error:
        st.error(f"{model_name} cannot be used here. {error} Pick another model above.")
        st.stop()
    st.caption(f"{loaded.describe()} on **{loaded.device}**; one forward + backward pass ≈ "
               f"{loaded.pass_seconds * 1000:.0f} ms.")
    return model_name, device, loaded


def _pick_image() -> tuple[bytes, str, str]:
    st.header("Image")
    samples = engines.sample_images()
    default = list(samples).index("chelsea") if "chelsea" in samples else 0
    if state.SAMPLE not in st.session_state:
        st.session_state[state.SAMPLE] = list(samples)[default]
    sample = st.selectbox("Sample image", list(samples), key=state.SAMPLE)
    upload = st.file_uploader(
        "…or upload your own", type=[f.lower() for f in engines.SUPPORTED_FORMATS] + ["jpg", "jpeg", "tif"],
        key=state.UPLOAD, max_upload_size=engines.MAX_UPLOAD_BYTES >> 20,
        help=f"Up to {engines.MAX_PIXELS // 1_000_000} megapixels; the model sees a centre crop.",
    )
    data, source = samples[sample].read_bytes(), f"sample “{sample}”"
    if upload is not None:
        try:
            upload_data = engines.read_bytes(upload)
            engines.read_image(upload_data)
            return upload_data, f"your upload “{upload.name}”", sample
        except engines.ImageError as error:
            st.error(f"{error} Showing the {source} meanwhile.")
    return data, source, sample


def _pick_target(model_name: str, digest: str, classes: list[str], prediction: engines.Prediction) -> int:
    top = prediction.top(5)
    if st.session_state.get(state.TARGET_FOR) != (model_name, digest):
        st.session_state[state.TARGET_FOR] = (model_name, digest)
        linked = st.session_state.pop(state.TARGET_PENDING, None)  # from a link: used once
        if linked is not None and linked >= len(classes):
            urlstate.note(f"target {linked} (the model has {len(classes)} classes)")
        st.session_state[state.TARGET] = linked if linked is not None and linked < len(classes) else top[0][0]
    order = [i for i, _ in top] + sorted(set(range(len(classes))) - {i for i, _ in top}, key=lambda i: classes[i])
    return int(st.selectbox(
        "Target class (explain this class)", order, key=state.TARGET,
        format_func=lambda i: f"{classes[i]} ({prediction.probabilities[0, i]:.1%})",
        help="Maps explain the logit of this class, the predicted one by default. Other classes matter too.",
    ))


def sidebar() -> Selection:
    """Renders the shared sidebar and returns the selection; stops the page with a message when
    the chosen model cannot be used."""
    state.init()
    urlstate.restore()
    with st.sidebar:
        model_name, device, loaded = _pick_model()
        data, source, sample = _pick_image()
        digest = engines.image_digest(data)
        x = resources.image_bytes_to_tensor(model_name, device, digest, data)
        prediction = resources.prediction(model_name, device, digest, x)
        target = _pick_target(model_name, digest, loaded.categories, prediction)
        ignored = urlstate.ignored()
        if ignored:
            st.warning("Parts of this link could not be used and were ignored or changed: " + "; ".join(ignored) + ".")
    return Selection(model_name, device, loaded, x, digest, source, sample, prediction, target)


def current() -> Selection:
    """This run's selection: the one the entry point rendered, or a fresh sidebar when the page
    runs on its own. Taken once per run (the entry point sets it again on the next)."""
    chosen = st.session_state.pop(state.SELECTION, None)
    return chosen if chosen is not None else sidebar()
