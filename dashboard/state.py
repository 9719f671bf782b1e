"""Session-state keys, as constants, and their initial values. Every widget's key lives here."""

from __future__ import annotations

import streamlit as st

import engines

MODEL = "model"
DEVICE = "device"
SAMPLE = "sample"
UPLOAD = "upload"
TARGET = "target"
TARGET_FOR = "target_for"  # (model, image digest) the target was chosen for
CUSTOM_FILE, CUSTOM_CLASSES = "custom.file", "custom.classes"
CUSTOM_SIZE, CUSTOM_MEAN, CUSTOM_STD = "custom.size", "custom.mean", "custom.std"
CUSTOM_LOAD = "custom.load"
CUSTOM_KIND, CUSTOM_ARCH = "custom.kind", "custom.architecture"  # safetensors weights or TorchScript
CUSTOM_MODELS = "custom.models"
MODEL_PENDING = "model.pending"  # a just-loaded own model, selected on the next run  # {name: label} of the models this session loaded
SELECTION = "selection"  # this run's Selection, handed from app.py to the page
TARGET_PENDING = "target_pending"  # a target from a link, applied once its model and image load
METHODS = "methods"
FIRST_SCREEN_SIZE = "first_screen.size"  # the image size the first screen's settings were scaled for
COMPUTE = "compute"
CANCEL = "cancel"
EXPORT_METRICS = "export.metrics"
EXPORT_PNG, EXPORT_NPZ, EXPORT_HTML = "export.png", "export.npz", "export.html"
EXPORT_CSV, EXPORT_JSON = "export.csv", "export.json"
SHARED_SCALE = "shared_scale"
OPACITY = "opacity"
DISPLAY_VIEW = "display.view"  # overlay, heat map, or side by side
DISPLAY_PERCENTILE = "display.percentile"  # where the colour scale is clipped, percentile of |map|
DISPLAY_SMOOTHING = "display.smoothing"  # σ in pixels of the display smoothing of pixel-level maps
SAMPLE_PENDING = "sample.pending"  # a sample a page asks the sidebar to show, applied before its widget

# Probe page
PROBE_PATCH = "probe.patch"
PROBE_SPAN = "probe.span"
PROBE_ROW = "probe.row"
PROBE_COL = "probe.col"
PROBE_PICKER = "probe.picker"  # the clickable region figure (its selection is the click)
PROBE_LAST_CLICK = "probe.last_click"  # the click already applied to row/col
PROBE_COMPUTE = "probe.compute"
PROBE_WANTED = "probe.wanted"  # nonlinearity maps asked for by button, so they stay shown
PROBE_JUMP = "probe.jump"
# Evaluate page
EVAL_METHODS = "evaluate.methods"
EVAL_STEPS = "evaluate.steps"
EVAL_DELETION_FILL = "evaluate.deletion_fill"
EVAL_INSERTION_START = "evaluate.insertion_start"
EVAL_RANKING = "evaluate.ranking"
EVAL_ROAD = "evaluate.road"  # add the ROAD curves (noisy linear imputation) beside deletion and insertion
EVAL_RANDOMISE = "evaluate.randomise"
EVAL_RANDOMISED = "evaluate.randomised"  # randomisation checks asked for, so they stay shown
EVAL_KEEP = "evaluate.keep"
EVAL_FILLS = "evaluate.fills"
EVAL_SHOWN_METHOD = "evaluate.shown_method"  # whose refilled images are shown
EVAL_VISITED = "evaluate.visited"  # the page has run once this session (it picks a confident sample only then)
EVAL_SWITCHED = "evaluate.switched"  # (from, to, why) when that first run switched the sample
EVAL_CONFIDENT = "evaluate.confident"  # the button that switches to the confident sample
OCC_METHOD = "occlusion.method"  # the map that ranks the pixels
OCC_RANKING = "occlusion.ranking"  # by value or by magnitude, for signed maps
OCC_PERCENT = "occlusion.percent"  # percent of pixels hidden
OCC_FILL = "occlusion.fill"
OCC_STEP = "occlusion.step"
OCC_WHICH_WAY = "occlusion.which_way"
OCC_BOX_CHART = "occlusion.box_chart"
OCC_BOX_FILL = "occlusion.box_fill"
OCC_BOX_ROWS = ("occlusion.box_row0", "occlusion.box_row1")
OCC_BOX_COLS = ("occlusion.box_col0", "occlusion.box_col1")
OCC_BOX_FOR = "occlusion.box_for"  # (model, image digest) the box inputs were set for
OCC_BOX_APPLIED = "occlusion.box_applied"  # the last dragged box copied into the inputs
# Learn page (the guided tour)
LEARN_STEP = "learn.step"
LEARN_OPACITY = "learn.opacity"
LEARN_EPSILON = "learn.epsilon"  # the saturated toy's finite step, pixel units
LEARN_SHAPE = "learn.shape"  # which shapes sample the ground-truth step uses
# Data set page (an audit folder)
DATASET_FOLDER = "dataset.folder"
DATASET_METRIC = "dataset.metric"  # ranks the most and least faithful images
DATASET_COUNT = "dataset.count"  # images shown at each end
DATASET_CLUSTER_METHOD = "dataset.cluster_method"
DATASET_CLASS = "dataset.class"
DATASET_CLUSTERS = "dataset.clusters"  # "auto" (eigengap) or a number
DATASET_EXPORT = "dataset.export"


def setting_key(method: str, param: str) -> str:
    """The widget key of one method setting."""
    return f"setting.{method}.{param}"


_DISPLAY = engines.DisplaySettings()
DEFAULTS = {
    DEVICE: "auto",
    SHARED_SCALE: _DISPLAY.shared,
    OPACITY: _DISPLAY.opacity,
    DISPLAY_VIEW: _DISPLAY.view,
    DISPLAY_PERCENTILE: _DISPLAY.percentile,
    DISPLAY_SMOOTHING: _DISPLAY.smoothing,
}


def init() -> None:
    """Puts every default in session state once per session, and applies a sample a page asked
    for (`SAMPLE_PENDING`): here, because this runs before the sidebar draws its widgets, and a
    widget's value cannot change once the widget is drawn in a run."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    if SAMPLE_PENDING in st.session_state:
        st.session_state[SAMPLE] = st.session_state.pop(SAMPLE_PENDING)
