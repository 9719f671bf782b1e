"""Saliency engines: pure PyTorch, no user interface.

The public API (kept stable for the dashboard, scripts and outside checks)::

    load_model(name, device="auto") -> LoadedModel   # .model, .preprocess(pil), .categories, .name
    catalogue(), model_status(name), load_torchscript(...)  # checked before it runs: script_check.py
    load_own_weights(safetensors, architecture, classes)  # own weights for a catalogue architecture
    methods() -> list[str]                           # registered method names
    method_info(name) -> MethodInfo                  # .family, .signed, .params, .label, .cost(...), .plan, .peers, .live
    method_families() -> list[str]                   # the families of the registered methods, in order
    explain(model, x, method, target=None, **params) -> Explanation
    explain_many(model, x, methods, target=None, params=None, preview=None) -> dict[str, Explanation]
    FIRST_SCREEN                                     # the Explore page's starting maps and settings
    set_threads(n), runtime_settings()               # torch's threads; ENGINES_OMP_WAIT_POLICY, ENGINES_THREADS
    predict(model, x) -> Prediction                  # .logits, .probabilities, .top(k)
    response_curve(model, x, region, ...)            # one region's true response vs its tangent
    occlude(model, x, map, fraction, fill)           # the live-occlusion call: one forward pass
    deletion_curve / insertion_curve / allegiance_curve(model, x, map, ...) -> Curve
    road_curve(model, x, map, order="most"|"least") -> Curve  # ROAD: removal by noisy linear imputation
    pointing_game(map, mask, tolerance=0), pointing_tolerance((H, W)), relevance_mass(map, mask)
    randomisation_check(model, x, method, ...)       # cascading weight randomisation on a copy
    sufficiency(model, x, map, keep, fills, ...)     # is the salient region sufficient?
    cluster_maps(maps, clusters=None) -> MapClusters  # SpRAy: one class's maps grouped by similarity
    audits_root(), list_audits(root), open_audit(root, name) -> Audit   # audit folders, for the Data set page
    cluster_class(audit, method, class_name) -> ClassClusters           # SpRAy on one class of an audit
    read_image(source) -> PIL RGB image; sample_images() -> {name: path}
    DisplaySettings(view, opacity, percentile, smoothing, shared)   # how maps are drawn, never what they are
    display_peak / color_limits / smooth_for_display / is_pixel_level # colour clip, smoothing for the eye
    overlay_rgb / heatmap_rgb / image_array / colour_scale           # pictures of maps (numpy)
    conv_layers(model) -> list[Layer]                # layers a CAM map can use, with output sizes

Images are `(N, 3, H, W)` in pixel units [0, 1]; models normalise inside.
"""

from engines.core.runtime import apply_threads, configure_openmp, keep_freed_memory, runtime_settings, set_threads

configure_openmp()  # before torch loads: ENGINES_OMP_WAIT_POLICY, see engines/core/runtime.py
keep_freed_memory()

from engines.families import linear, signed, nonlinear, masks, occlusion, cam, surrogate  # noqa: F401, I001  (registers the methods, in family order)
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
from engines.data.samples import object_mask, sample_batch
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
from engines.models.own import ARCHITECTURES as OWN_ARCHITECTURES, load_own_weights
from engines.models.script_check import RunLimits
from engines.families.nonlinear import RegionGrid, ResponseCurve, region_grid, response_curve
from engines.families.occlusion import Occluded, occlude, occlude_box
from engines.core.panel import FIRST_SCREEN, first_screen_settings
from engines.core.passes import Cancelled, LayerUnavailable, OutOfMemory, available_devices, pick_device
from engines.models.layers import Layer, conv_layers
from engines.core.registry import Cost, MethodInfo, Param, Peer, Stage, method_families, method_info
from engines.core.registry import method_names as methods
from engines.evaluation.road import ROAD_FRACTIONS, impute, road_curve
from engines.evaluation.sufficiency import SufficiencyReport, sufficiency
from engines.display.colours import DIVERGING, SEQUENTIAL, colour_scale
from engines.display.overlays import heatmap_rgb, image_array, overlay_rgb
from engines.display.scaling import DisplaySettings, color_limits, display_peak, is_pixel_level, smooth_for_display
from engines.evaluation.clusters import MapClusters, cluster_maps
from engines.audit.report import METRICS as AUDIT_METRICS
from engines.audit.reader import (
    AUDITS_VARIABLE,
    LOWER_IS_BETTER,
    Audit,
    AuditFolderError,
    ClassClusters,
    MapFile,
    audits_root,
    cluster_class,
    list_audits,
    open_audit,
)

apply_threads()  # ENGINES_THREADS, now that torch has loaded

__all__ = [
    "OCCLUSION_FILLS", "Cost", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "SUPPORTED_FORMATS", "read_bytes", "randomisation_steps",
    "MAX_MODEL_BYTES", "RegionGrid", "region_grid", "object_mask", "sample_batch",
    "PAPER_FRACTIONS", "Curve", "RandomisationStep", "allegiance_curve", "deletion_curve", "insertion_curve",
    "pointing_game", "POINTING_TOLERANCE", "pointing_tolerance", "ROAD_FRACTIONS", "impute", "road_curve",
    "randomisation_check", "relevance_mass", "ResponseCurve", "response_curve", "Occluded",
    "occlude", "occlude_box", "SufficiencyReport", "sufficiency", "MapClusters", "cluster_maps",
    "AUDIT_METRICS", "AUDITS_VARIABLE", "LOWER_IS_BETTER", "Audit", "AuditFolderError", "ClassClusters", "MapFile", "audits_root",
    "cluster_class", "list_audits", "open_audit",
    "Cancelled", "DEFAULT_MODEL", "Explanation", "method_families", "Peer", "Stage", "ImageError", "LoadedModel", "MethodInfo",
    "ModelFileError", "ModelUnavailable", "OutOfMemory", "Param", "available_devices", "catalogue", "explain",
    "explain_many", "image_digest", "load_model", "load_torchscript", "method_info", "methods", "model_status",
    "pick_device", "predict", "Prediction", "read_image", "sample_images", "sample_mask",
    "DIVERGING", "SEQUENTIAL", "DisplaySettings", "color_limits", "colour_scale", "display_peak", "heatmap_rgb",
    "image_array", "is_pixel_level", "overlay_rgb", "smooth_for_display",
    "OWN_ARCHITECTURES", "load_own_weights", "RunLimits",
    "Layer", "LayerUnavailable", "conv_layers",
    "FIRST_SCREEN", "first_screen_settings", "runtime_settings", "set_threads",
]
