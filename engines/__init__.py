"""Saliency engines: pure PyTorch, no user interface.

The public API (kept stable for the dashboard, scripts and outside checks)::

    load_model(name, device="auto") -> LoadedModel   # .model, .preprocess(pil), .categories, .name
    catalogue(), model_status(name), load_torchscript(...)
    methods() -> list[str]                           # registered method names
    method_info(name) -> MethodInfo                  # .family, .signed, .params, .label, .cost(...)
    explain(model, x, method, target=None, **params) -> Explanation
    explain_many(model, x, methods, target=None, params=None, preview=None) -> dict[str, Explanation]
    FIRST_SCREEN                                     # the Explore page's starting maps and settings
    set_threads(n), runtime_settings()               # torch's threads; ENGINES_OMP_WAIT_POLICY, ENGINES_THREADS
    predict(model, x) -> Prediction                  # .logits, .probabilities, .top(k)
    response_curve(model, x, region, ...)            # one region's true response vs its tangent
    occlude(model, x, map, fraction, fill)           # the live-occlusion call: one forward pass
    deletion_curve / insertion_curve / allegiance_curve(model, x, map, ...) -> Curve
    randomisation_check(model, x, method, ...)       # cascading weight randomisation on a copy
    sufficiency(model, x, map, keep, fills, ...)     # is the salient region sufficient?
    read_image(source) -> PIL RGB image; sample_images() -> {name: path}

Images are `(N, 3, H, W)` in pixel units [0, 1]; models normalise inside.
"""

from engines.core.runtime import apply_threads, configure_openmp, keep_freed_memory, runtime_settings, set_threads

configure_openmp()  # before torch loads: ENGINES_OMP_WAIT_POLICY, see engines/core/runtime.py
keep_freed_memory()

from engines.families import linear, signed, nonlinear, masks, occlusion  # noqa: F401, I001  (registers the methods, in family order)
from engines.core.explain import Explanation, Prediction, explain, explain_many, predict
from engines.data.images import ImageError, image_digest, read_image, sample_images, sample_mask
from engines.evaluation.metrics import (
    PAPER_FRACTIONS,
    Curve,
    RandomisationStep,
    allegiance_curve,
    deletion_curve,
    insertion_curve,
    pointing_game,
    randomisation_check,
    relevance_mass,
)
from engines.models.catalogue import (
    DEFAULT_MODEL,
    LoadedModel,
    ModelFileError,
    ModelUnavailable,
    catalogue,
    load_model,
    load_torchscript,
    model_status,
)
from engines.families.nonlinear import ResponseCurve, response_curve
from engines.families.occlusion import Occluded, occlude, occlude_box
from engines.core.panel import FIRST_SCREEN, first_screen_settings
from engines.core.passes import Cancelled, OutOfMemory, available_devices, pick_device
from engines.core.registry import FAMILIES, MethodInfo, Param, method_info
from engines.core.registry import method_names as methods
from engines.evaluation.sufficiency import SufficiencyReport, sufficiency

apply_threads()  # ENGINES_THREADS, now that torch has loaded

__all__ = [
    "PAPER_FRACTIONS", "Curve", "RandomisationStep", "allegiance_curve", "deletion_curve", "insertion_curve",
    "pointing_game", "randomisation_check", "relevance_mass", "ResponseCurve", "response_curve", "Occluded",
    "occlude", "occlude_box", "SufficiencyReport", "sufficiency",
    "Cancelled", "DEFAULT_MODEL", "FIRST_SCREEN", "first_screen_settings", "Explanation", "FAMILIES", "ImageError", "LoadedModel", "MethodInfo",
    "ModelFileError", "ModelUnavailable", "OutOfMemory", "Param", "available_devices", "catalogue", "explain",
    "explain_many", "image_digest", "load_model", "load_torchscript", "method_info", "methods", "model_status",
    "pick_device", "predict", "runtime_settings", "set_threads", "Prediction", "read_image", "sample_images", "sample_mask",
]
