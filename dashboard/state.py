"""Session-state keys, as constants, and their initial values. Every widget's key lives here."""

from __future__ import annotations

import streamlit as st

MODEL = "model"
DEVICE = "device"
SAMPLE = "sample"
UPLOAD = "upload"
TARGET = "target"
TARGET_FOR = "target_for"  # (model, image digest) the target was chosen for
METHODS = "methods"
SHARED_SCALE = "shared_scale"
OPACITY = "opacity"


def setting_key(method: str, param: str) -> str:
    """The widget key of one method setting."""
    return f"setting.{method}.{param}"


DEFAULTS = {
    DEVICE: "auto",
    SHARED_SCALE: False,
    OPACITY: 0.85,
}


def init() -> None:
    """Puts every default in session state once per session."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
