"""Widgets built from the registry: a method's settings form comes from its `Param` list."""

from __future__ import annotations

from typing import Any, Optional

import streamlit as st

import engines
from dashboard import state

RIVALS_FOR_LARGE_MODELS = 9
"""Default rival count where exact active/inactive maps would need hundreds of backward passes."""


def ui_default(param: engines.Param, num_classes: int) -> Any:
    """The dashboard's starting value: the registry default, except a top-K rival comparison on
    models with many classes (the exact mode stays one tick away)."""
    if param.name == "rivals" and num_classes > 100:
        return RIVALS_FOR_LARGE_MODELS
    return param.default


def layer_widget(method: str, param: engines.Param) -> Optional[str]:
    """A layer setting: the sidebar model's convolutional layers by name with their output size
    (None: the model's CAM layer). A model whose layers cannot be seen (TorchScript) says so here,
    where its CAM settings would be."""
    from dashboard import resources

    key = state.setting_key(method, param.name)
    try:
        default, layers = resources.cam_layers(st.session_state[state.MODEL], st.session_state[state.DEVICE])
    except engines.LayerUnavailable as error:
        st.warning(f"{error}")
        return None
    names = [None] + [layer.name for layer in layers]
    described = {layer.name: layer.describe() for layer in layers}
    if st.session_state.get(key) not in names:  # a link may name a layer this model lacks
        st.session_state[key] = None
    return st.selectbox(f"{param.name} ({len(layers)} convolutional layers)", names, key=key, help=param.help,
                        format_func=lambda n: f"the model's CAM layer: {described.get(default, default)}"
                        if n is None else described[n])


def param_widget(method: str, param: engines.Param, num_classes: int) -> Any:
    """One widget for one setting; returns its value (None where the param allows it)."""
    if param.kind == "layer":
        return layer_widget(method, param)
    key = state.setting_key(method, param.name)
    default = ui_default(param, num_classes)
    label = f"{param.name}" + (f" ({param.unit})" if param.unit else "")
    if param.optional:
        st.session_state.setdefault(key + ".none", default is None)
        use_none = st.checkbox(f"{param.name}: {param.none_means}", key=key + ".none", help=param.help)
        if use_none:
            return None
        default = default if default is not None else (int(param.low or 1) if param.kind == "int" else 0.0)
    if param.kind == "int" and param.name == "rivals":
        default = min(default, max(1, num_classes - 1))
    st.session_state.setdefault(key, default)  # a link may have set it already
    if param.kind == "choice":
        return st.selectbox(label, param.choices, key=key, help=param.help)
    if param.kind == "bool":
        return st.checkbox(label, key=key, help=param.help)
    if param.kind == "int":
        high = None if param.high is None else int(param.high)
        if param.name == "rivals":
            high = max(1, num_classes - 1)
        return int(st.number_input(label, min_value=int(param.low or 0), max_value=high, step=1, key=key,
                                   help=param.help))
    return float(st.number_input(label, min_value=param.low, max_value=param.high, key=key, help=param.help,
                                 format="%.4g"))


def settings_form(method: str, num_classes: int) -> dict[str, Any]:
    """All settings of one method, in an expander; an empty dict for methods without any."""
    info = engines.method_info(method)
    if not info.params:
        return {}
    with st.expander(f"{info.label} settings"):
        return {p.name: param_widget(method, p, num_classes) for p in info.params}


def rivals_note(settings: dict[str, dict], num_classes: int) -> Optional[str]:
    """Says which comparison the active/inactive maps use, as the signed-map paper asks."""
    used = {s.get("rivals", "absent") for m, s in settings.items() if m in ("active", "inactive")}
    used.discard("absent")
    if not used:
        return None
    parts = [f"exact (all {num_classes - 1} rival classes)" if r is None else f"the top {r} rival classes"
             for r in sorted(used, key=lambda r: -1 if r is None else r)]
    return "Active/inactive maps compare against " + " and ".join(parts) + "."


def display_settings() -> engines.DisplaySettings:
    """The Display controls (place them in the sidebar): view, shared scale, opacity, colour clip
    and display smoothing. They change how maps are drawn, never the maps themselves: stored
    maps, exports and metrics stay raw."""
    st.header("Display")
    view = st.radio("Show each map", engines.DisplaySettings.VIEWS, key=state.DISPLAY_VIEW, horizontal=True,
                    help="overlay: the map over the image. heat map: the map alone, on an opaque scale. "
                         "side by side: the image beside the heat map; zooming one zooms the other.")
    shared = st.toggle("One colour scale for all maps", key=state.SHARED_SCALE,
                       help="Off: each map is scaled to its own range.")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, key=state.OPACITY, step=0.05, disabled=view != "overlay",
                        help="How much the strongest map values cover the image; weaker ones cover less, "
                             "and zero leaves the image as it is.")
    low, high = engines.DisplaySettings.PERCENTILE_RANGE
    percentile = st.slider(
        "Clip the colour scale at percentile", low, high, key=state.DISPLAY_PERCENTILE, step=0.5, format="%.1f",
        help="The scale tops out at this percentile of |map|: at 99, the brightest 1 % of pixels all show in the "
             "end colour, so a few extreme pixels do not wash out the rest (Captum's outlier_perc does the same, "
             "counting a share of the total |value| instead). 100: no clipping. Hover shows the true value.")
    low, high = engines.DisplaySettings.SMOOTHING_RANGE
    smoothing = st.slider(
        "Smooth pixel-level maps for display (σ, pixels)", low, high, key=state.DISPLAY_SMOOTHING, step=0.5,
        format="%.1f",
        help="A Gaussian blur of maps that change from pixel to pixel (gradient-like), for the eye only: maps "
             "over regions (occlusion, masks) are drawn as they are, and stored maps, exports and metrics always "
             "use the raw map. 0: off.")
    return engines.DisplaySettings(view=view, opacity=float(opacity), percentile=float(percentile),
                                   smoothing=float(smoothing), shared=bool(shared))
