"""The URL holds the view (model, sample, target, methods, settings) so a link reproduces it.

Uploads never go into the URL. `restore()` runs once per session, before any widget, and seeds
the widgets' keys; `publish()` writes the current view back after the widgets have run. Unknown
or out-of-range values in a link are ignored, never an error.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

import engines
from dashboard import state

_RESTORED = "url.restored"


def restore() -> None:
    """Seeds session state from the query string, once per session."""
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    query = st.query_params
    if query.get("model") in engines.catalogue():
        st.session_state[state.MODEL] = query["model"]
    if query.get("sample") in engines.sample_images():
        st.session_state[state.SAMPLE] = query["sample"]
    if str(query.get("target", "")).isdigit():
        st.session_state[state.TARGET_PENDING] = int(query["target"])
    if "methods" in query:
        wanted = [m for m in query["methods"].split(",") if m in engines.methods()]
        for family in engines.method_families():
            st.session_state[f"{state.METHODS}.{family}"] = [m for m in wanted if engines.method_info(m).family == family]
    _restore_settings(query.get("settings"))


def _restore_settings(text: Any) -> None:
    try:
        given = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return
    for method, values in given.items() if isinstance(given, dict) else ():
        if method not in engines.methods() or not isinstance(values, dict):
            continue
        params = {p.name: p for p in engines.method_info(method).params}
        for name, value in values.items():
            if name not in params:
                continue
            try:
                value = params[name].check(value)
            except ValueError:
                continue
            key = state.setting_key(method, name)
            if params[name].optional:
                st.session_state[key + ".none"] = value is None
            if value is not None:
                st.session_state[key] = value


def publish(model: str, sample: str, target: int, methods: list[str], settings: dict[str, dict]) -> None:
    """Writes the view into the URL: only settings that differ from the registry's defaults."""
    changed = {
        m: {k: v for k, v in s.items() if v != engines.method_info(m).defaults().get(k)} for m, s in settings.items()
    }
    changed = {m: s for m, s in changed.items() if s}
    view = {"model": model, "sample": sample, "target": str(target), "methods": ",".join(methods)}
    if changed:
        view["settings"] = json.dumps(changed, separators=(",", ":"), sort_keys=True)
    if dict(st.query_params) != view:
        st.query_params.from_dict(view)
