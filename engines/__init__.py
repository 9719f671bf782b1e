"""Saliency engines: pure PyTorch, no user interface.

The public API (kept stable for the dashboard, scripts and outside checks)::

    load_model(name, device="auto") -> LoadedModel   # .model, .preprocess(pil), .categories, .name
    catalogue(), model_status(name), load_torchscript(...)
    methods() -> list[str]                           # registered method names
    method_info(name) -> MethodInfo                  # .family, .signed, .params, .label, .cost(...), .plan, .peers, .live
    method_families() -> list[str]                   # the families of the registered methods, in order
    explain(model, x, method, target=None, **params) -> Explanation
    explain_many(model, x, methods, target=None, params=None) -> dict[str, Explanation]
    predict(model, x) -> Prediction                  # .logits, .probabilities, .top(k)
    response_curve(model, x, region, ...)            # one region's true response vs its tangent
    occlude(model, x, map, fraction, fill)           # the live-occlusion call: one forward pass
    deletion_curve / insertion_curve / allegiance_curve(model, x, map, ...) -> Curve
    road_curve(model, x, map, order="most"|"least") -> Curve  # ROAD: removal by noisy linear imputation
    pointing_game(map, mask, tolerance=0), pointing_tolerance((H, W)), relevance_mass(map, mask)
    randomisation_check(model, x, method, ...)       # cascading weight randomisation on a copy
    sufficiency(model, x, map, keep, fills, ...)     # is the salient region sufficient?
    read_image(source) -> PIL RGB image; sample_images() -> {name: path}

Images are `(N, 3, H, W)` in pixel units [0, 1]; models normalise inside.
"""

from engines.core.runtime import keep_freed_memory, quiet_openmp

quiet_openmp()  # before torch loads: see engines/core/runtime.py
keep_freed_memory()

from engines.families import linear, signed, nonlinear, masks, occlusion  # noqa: F401, I001  (registers the methods, in family order)
from engines.core.explain import Explanation, Prediction, explain, explain_many, predict
from engines.core.fills import OCCLUSION_FILLS
from engines.data.images import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    SUPPORTED_FORMATS,
    ImageError,
    image_digest,
    read_bytes,
    read_image,
    sample_images,
    sample_mask,
)
from engines.evaluation.metrics import (
    PAPER_FRACTIONS,
    Curve,
    RandomisationStep,
    allegiance_curve,
    deletion_curve,
    insertion_curve,
    POINTING_TOLERANCE,
    pointing_game,
    pointing_tolerance,
    randomisation_check,
    randomisation_steps,
    relevance_mass,
)
from engines.models.catalogue import (
    DEFAULT_MODEL,
    MAX_MODEL_BYTES,
    LoadedModel,
    ModelFileError,
    ModelUnavailable,
    catalogue,
    load_model,
    load_torchscript,
    model_status,
)
from engines.families.nonlinear import RegionGrid, ResponseCurve, region_grid, response_curve
from engines.families.occlusion import Occluded, occlude, occlude_box
from engines.core.passes import Cancelled, OutOfMemory, available_devices, pick_device
from engines.core.registry import Cost, MethodInfo, Param, Peer, Stage, method_families, method_info
from engines.core.registry import method_names as methods
from engines.evaluation.road import ROAD_FRACTIONS, impute, road_curve
from engines.evaluation.sufficiency import SufficiencyReport, sufficiency

__all__ = [
    "OCCLUSION_FILLS", "Cost", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "SUPPORTED_FORMATS", "read_bytes", "randomisation_steps",
    "MAX_MODEL_BYTES", "RegionGrid", "region_grid",
    "PAPER_FRACTIONS", "Curve", "RandomisationStep", "allegiance_curve", "deletion_curve", "insertion_curve",
    "pointing_game", "POINTING_TOLERANCE", "pointing_tolerance", "ROAD_FRACTIONS", "impute", "road_curve",
    "randomisation_check", "relevance_mass", "ResponseCurve", "response_curve", "Occluded",
    "occlude", "occlude_box", "SufficiencyReport", "sufficiency",
    "Cancelled", "DEFAULT_MODEL", "Explanation", "method_families", "Peer", "Stage", "ImageError", "LoadedModel", "MethodInfo",
    "ModelFileError", "ModelUnavailable", "OutOfMemory", "Param", "available_devices", "catalogue", "explain",
    "explain_many", "image_digest", "load_model", "load_torchscript", "method_info", "methods", "model_status",
    "pick_device", "predict", "Prediction", "read_image", "sample_images", "sample_mask",
]
