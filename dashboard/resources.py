"""Every cached resource of the dashboard, and nothing else.

Models are cached once per server (shared by every session, never mutated); maps are cached
by the image's digest, the model, the method list, their settings and the target, so a change
of an unrelated widget recomputes nothing.
"""

from __future__ import annotations

import json
from typing import Optional

import streamlit as st

import engines


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def model(name: str, device: str) -> engines.LoadedModel:
    """A catalogue model, loaded once per (name, device) for every session."""
    return engines.load_model(name, device=device)


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


@st.cache_data(show_spinner=False, max_entries=64)
def maps(model_name: str, device: str, digest: str, _x, methods: tuple[str, ...], settings_json: str,
         target: Optional[int]) -> dict[str, engines.Explanation]:
    """The explanations of `methods` for the image, sharing their passes."""
    settings = json.loads(settings_json)
    return engines.explain_many(model(model_name, device), _x, list(methods), target, settings)
