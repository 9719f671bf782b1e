"""Every cached resource of the dashboard, and nothing else.

Models are cached once per server (shared by every session, never mutated); maps are stored
per method, keyed by the image's digest, the model, the method's settings and the target, so a
change of an unrelated widget (or adding one method) recomputes nothing already computed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import streamlit as st

import engines
from dashboard.store import LruStore


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _catalogue_model(name: str, device: str) -> engines.LoadedModel:
    """A catalogue model, loaded once per (name, device) for every session."""
    return engines.load_model(name, device=device)


@st.cache_resource
def _custom_models() -> LruStore:
    """People's own TorchScript models, keyed by a digest of their files (never by their content)."""
    return LruStore(capacity=8)


def model(name: str, device: str) -> engines.LoadedModel:
    """The model called `name`: one of the catalogue's, or a TorchScript model loaded here."""
    custom = _custom_models().get((name, device))
    return custom if custom is not None else _catalogue_model(name, device)


OWN_MODELS_ENV = "SALIENCY_OWN_MODELS"
"""Environment variable of the server: `off` (or 0, false, no) turns "Use your own model" off."""


def own_models_allowed() -> bool:
    """Whether this server accepts people's own model files (`SALIENCY_OWN_MODELS`, on by default)."""
    return os.environ.get(OWN_MODELS_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def _refuse_if_off() -> None:
    if not own_models_allowed():
        raise engines.ModelFileError(f"Own models are turned off on this server ({OWN_MODELS_ENV}=off).")


def load_custom_model(data: bytes, classes: bytes, input_size: int, mean: tuple, std: tuple, device: str) -> str:
    """Loads a person's TorchScript model (checked before it runs: `engines.load_torchscript`)
    with its class list and returns its name (a digest); raises engines.ModelFileError with what
    to do when it cannot be used, or when own models are turned off on this server."""
    _refuse_if_off()
    settings = json.dumps([input_size, list(mean), list(std)]).encode()
    name = "custom-" + engines.image_digest(data + b"\0" + classes + b"\0" + settings)[:12]
    if _custom_models().get((name, device)) is None:
        loaded = engines.load_torchscript(data, classes, input_size=input_size, mean=mean, std=std, name=name,
                                          device=device)
        _custom_models().put((name, device), loaded)
    return name


def load_own_weights(data: bytes, architecture: str, classes: bytes, device: str) -> str:
    """Loads a person's safetensors weights for a catalogue `architecture` with its class list
    (`engines.load_own_weights`: no code from the file runs) and returns its name (a digest)."""
    _refuse_if_off()
    name = "own-" + engines.image_digest(data + b"\0" + classes + b"\0" + architecture.encode())[:12]
    if _custom_models().get((name, device)) is None:
        loaded = engines.load_own_weights(data, architecture, classes, name=name, device=device)
        _custom_models().put((name, device), loaded)
    return name


@st.cache_data(show_spinner=False, max_entries=16)
def cam_layers(model_name: str, device: str) -> tuple[str, list[engines.Layer]]:
    """The model's default CAM layer and its convolutional layers with their output sizes (one
    forward pass, once per model); raises engines.LayerUnavailable for a TorchScript model."""
    loaded = model(model_name, device)
    return loaded.cam_layer, engines.conv_layers(loaded)


@st.cache_data(show_spinner=False, max_entries=64)
def model_status(name: str) -> tuple[bool, str]:
    return engines.model_status(name)


@st.cache_data(show_spinner=False, max_entries=16)
def image_bytes_to_tensor(model_name: str, device: str, digest: str, _data: bytes):
    """The preprocessed image `(1, 3, S, S)` for a model, keyed by the bytes' digest."""
    return model(model_name, device).preprocess(engines.read_image(_data))


@st.cache_data(show_spinner=False, max_entries=8)
def prediction(model_name: str, device: str, digest: str, _x) -> engines.Prediction:
    """The model's prediction for the clean image."""
    return engines.predict(model(model_name, device), _x)


@st.cache_resource
def _map_store() -> LruStore:
    """Computed maps of every session, one entry per (image, model, method, settings, target)."""
    return LruStore(capacity=256)


def _map_key(model_name: str, device: str, digest: str, method: str, settings: dict, target: Optional[int]) -> tuple:
    return (model_name, device, digest, method, json.dumps(settings, sort_keys=True), target)


def missing_maps(model_name: str, device: str, digest: str, methods: tuple[str, ...], settings_json: str,
                 target: Optional[int]) -> list[str]:
    """The methods whose maps for this image, settings and target are not computed yet."""
    settings = json.loads(settings_json)
    store = _map_store()
    return [m for m in methods
            if store.get(_map_key(model_name, device, digest, m, settings.get(m, {}), target)) is None]


def maps(model_name: str, device: str, digest: str, _x, methods: tuple[str, ...], settings_json: str,
         target: Optional[int], progress: Optional[Callable[[int, int], None]] = None,
         preview: Optional[Callable[[engines.Explanation], None]] = None) -> dict[str, engines.Explanation]:
    """The explanations of `methods` for the image: stored ones are reused, the missing ones are
    computed together (sharing their passes) and stored. `progress(done, total)` follows the
    computation and `preview(explanation)` receives each map while it refines and when it is
    final (`engines.explain_many`); raising from either cancels, and nothing partial is stored:
    maps are stored only once every one of the run is final."""
    settings = json.loads(settings_json)
    store = _map_store()
    todo = missing_maps(model_name, device, digest, methods, settings_json, target)
    if todo:
        loaded = model(model_name, device)
        try:
            fresh, failed = engines.explain_many(loaded, _x, todo, target, {m: settings.get(m, {}) for m in todo},
                                                 progress=progress, preview=preview), None
        except ValueError:  # one method that cannot run here (a CAM map of a TorchScript
            if len(todo) == 1:       # model, say) must not cost the others their maps
                raise
            fresh, failed = {}, None
            for name in todo:
                try:
                    fresh.update(engines.explain_many(loaded, _x, [name], target, {name: settings.get(name, {})},
                                                      progress=progress, preview=preview))
                except ValueError as error:
                    failed = failed or ValueError(f"{engines.method_info(name).label}: {error}")
        for name, result in fresh.items():
            store.put(_map_key(model_name, device, digest, name, settings.get(name, {}), target), result)
        if failed is not None:
            raise failed
    return {m: store.get(_map_key(model_name, device, digest, m, settings.get(m, {}), target)) for m in methods}


# ---------------------------------------------------------------- probe and evaluate pages
# The long computations below draw their own progress bar: an element made inside a cached
# function is replayed on a cache hit (made and emptied again, so nothing shows), whereas one
# made outside it and updated from inside cannot be replayed (CacheReplayClosureError).


def progress_bar(text: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A progress bar at the caller's place: `(update(done, total), remove())`."""
    bar = st.progress(0.0, text=text)

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{text} {done} / {total}")

    return update, bar.empty


def _ranked(saliency, ranking: str):
    """The map that ranks pixels: itself ("value": positive evidence first) or |map| ("magnitude")."""
    if ranking not in ("value", "magnitude"):
        raise ValueError(f"ranking must be 'value' or 'magnitude'; got {ranking!r}")
    return saliency.abs() if ranking == "magnitude" else saliency


@st.cache_data(show_spinner=False, max_entries=64)
def response_curve(model_name: str, device: str, digest: str, _x, region: tuple[int, int], target: int,
                   span: float, points: int, patch: int) -> engines.ResponseCurve:
    """One region's true response against its tangent line (`engines.response_curve`)."""
    return engines.response_curve(model(model_name, device), _x, region, target, span=span, points=points,
                                  patch=patch)


@st.cache_data(show_spinner=False, max_entries=16)
def nonlinearity_map(model_name: str, device: str, digest: str, _x, settings_json: str,
                     target: int) -> engines.Explanation:
    """The nonlinearity (off-the-tangent) map with these settings, with a progress bar."""
    update, remove = progress_bar("Brightening and darkening every region…")
    try:
        return engines.explain(model(model_name, device), _x, "nonlinearity", target, progress=update,
                               **json.loads(settings_json))
    finally:
        remove()


@st.cache_data(show_spinner=False, max_entries=64)
def evaluation_curves(model_name: str, device: str, digest: str, _x, _saliency, method: str, settings_json: str,
                      target: int, ranking: str = "value", steps: int = 50, deletion_fill: str = "black",
                      insertion_start: str = "blur") -> dict[str, engines.Curve]:
    """Deletion, insertion and allegiance (black, white) curves of the map `_saliency` `(1, H, W)`
    of `method` with its settings for `target`, its pixels ranked by `ranking` ("value" or
    "magnitude"). Deletion and insertion follow the target's probability over `steps` steps
    (RISE: black deletion, insertion from a blur by default); allegiance follows the clean top
    class on the paper's fractions."""
    loaded = model(model_name, device)
    _saliency = _ranked(_saliency, ranking)
    return {
        "deletion": engines.deletion_curve(loaded, _x, _saliency, target, steps=steps, fill=deletion_fill),
        "insertion": engines.insertion_curve(loaded, _x, _saliency, target, steps=steps, start=insertion_start),
        "allegiance_black": engines.allegiance_curve(loaded, _x, _saliency, fill="black"),
        "allegiance_white": engines.allegiance_curve(loaded, _x, _saliency, fill="white"),
    }


@st.cache_data(show_spinner=False, max_entries=64)
def road_curves(model_name: str, device: str, digest: str, _x, _saliency, method: str, settings_json: str,
                target: int, ranking: str = "value") -> dict[str, engines.Curve]:
    """ROAD curves (Rong et al. 2022) of the map `_saliency` `(1, H, W)` of `method` for `target`:
    the target's probability as the most and the least relevant pixels are removed by noisy
    linear imputation, on Rong et al.'s fractions; pixels ranked by `ranking`."""
    loaded = model(model_name, device)
    _saliency = _ranked(_saliency, ranking)
    return {order_kind: engines.road_curve(loaded, _x, _saliency, order, target)
            for order_kind, order in (("road_most", "most"), ("road_least", "least"))}


@st.cache_data(show_spinner=False, max_entries=32)
def randomisation(model_name: str, device: str, digest: str, _x, method: str, settings_json: str,
                  target: int) -> list[engines.RandomisationStep]:
    """Cascading weight randomisation of a copy of the model (`engines.randomisation_check`),
    the map of `method` recomputed after each step, with a progress bar."""
    update, remove = progress_bar(f"Randomising layers and re-explaining ({engines.method_info(method).label})…")
    try:
        return engines.randomisation_check(model(model_name, device), _x, method, target, progress=update,
                                           **json.loads(settings_json))
    finally:
        remove()


@st.cache_data(show_spinner=False, max_entries=8)
def other_samples(model_name: str, device: str, digest: str) -> tuple:
    """Every bundled sample but the one with this digest, preprocessed for the model: the
    backgrounds the sufficiency test pastes the kept region onto: `(images (M, 3, S, S), names)`,
    or `(None, ())` where there is no other sample."""
    return engines.sample_batch(model(model_name, device), leave_out_digest=digest)


@st.cache_data(show_spinner=False, max_entries=64)
def sufficiency(model_name: str, device: str, digest: str, _x, _saliency, method: str, settings_json: str,
                target: int, ranking: str, keep: float, fills: tuple[str, ...]) -> engines.SufficiencyReport:
    """Keeps the `keep` most salient pixels of the map `_saliency` of `method` (with its settings,
    for `target`), refills the rest with each of `fills`, and asks the model again
    (`engines.sufficiency`); pixels are ranked by `ranking` ("value" or "magnitude"); "paste"
    uses the other sample images."""
    _saliency = _ranked(_saliency, ranking)
    others, _ = other_samples(model_name, device, digest) if "paste" in fills else (None, ())
    return engines.sufficiency(model(model_name, device), _x, _saliency, keep=keep, fills=fills, others=others,
                               target=target)


# ---------------------------------------------------------------- learn page
# Preset examples of the guided tour: (model name, sample name); "saturated_toy" is built in code
# (engines/models/toys.py) with its own image, so its sample is "".


@st.cache_resource(show_spinner="Loading the example…", max_entries=4)
def learn_example(model_name: str, sample: str) -> tuple:
    """`(LoadedModel, x (1, 3, S, S))` of one preset example of the Learn page, shared by sessions."""
    if model_name == "saturated_toy":
        from engines.models import toys

        return toys.saturated_toy()
    loaded = model(model_name, "auto")
    return loaded, loaded.preprocess(engines.read_image(engines.sample_images()[sample]))


@st.cache_data(show_spinner="Computing the maps…", max_entries=32)
def learn_maps(model_name: str, sample: str, methods: tuple[str, ...], settings_json: str) -> dict:
    """The maps of `methods` (settings per method as JSON) for the predicted class of a preset."""
    loaded, x = learn_example(model_name, sample)
    return engines.explain_many(loaded, x, list(methods), None, json.loads(settings_json))


@st.cache_data(show_spinner=False, max_entries=32)
def learn_response(model_name: str, sample: str, region: tuple[int, int], span: float, points: int,
                   patch: int) -> engines.ResponseCurve:
    """One region's true response against its tangent for a preset (`engines.response_curve`)."""
    loaded, x = learn_example(model_name, sample)
    return engines.response_curve(loaded, x, region, None, span=span, points=points, patch=patch)


@st.cache_data(show_spinner=False, max_entries=16)
def learn_mask(sample: str, size: int):
    """The bundled object mask of a sample as a `(size, size)` bool tensor (`engines.object_mask`)."""
    return engines.object_mask(sample, size)


# ---------------------------------------------------------------- the Data set page (audit folders)


def audit_stamp(root: str, name: str) -> float:
    """When the audit's summary was last written: part of the cache key, so a rerun audit is re-read."""
    try:
        return (Path(root) / name / "summary.json").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner="Reading the audit…", max_entries=8)
def audit(root: str, name: str, stamp: float) -> engines.Audit:
    return engines.open_audit(Path(root), name)


@st.cache_data(show_spinner="Clustering the maps…", max_entries=32)
def class_clusters(root: str, name: str, stamp: float, method: str, class_name: str,
                   clusters: Optional[int]) -> engines.ClassClusters:
    return engines.cluster_class(audit(root, name, stamp), method, class_name, clusters)


@st.cache_data(show_spinner=False, max_entries=256)
def saved_map(root: str, name: str, stamp: float, image: str, method: str) -> engines.MapFile:
    return audit(root, name, stamp).load_map(image, method)
