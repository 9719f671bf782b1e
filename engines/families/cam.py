"""Class activation maps (CAM family): a layer's feature maps, weighted by how the class score
depends on them, upsampled to the image.

With `A` the activations `(N, K, h, w)` of the chosen layer for the clean image and
`G = ∂s_c/∂A` the gradient of the target's logit with respect to them:

- Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks via
  gradient-based localization"): `ReLU(Σ_k w_k A_k)` with `w_k` the spatial mean of `G_k`.
- Grad-CAM++ (Chattopadhay et al. 2018, "Grad-CAM++: generalized gradient-based visual
  explanations"): `w_k = Σ_ij α_ij^k ReLU(G_ij^k)` with `α = G² / (2G² + Σ_ab A_ab · G³)` (the
  paper's closed form for an exponentiated score, in powers of the first derivative), zero
  where the denominator is zero.
- Score-CAM (Wang et al. 2020, "Score-CAM: score-weighted visual explanations for CNNs"): each
  activation map, upsampled and min-max normalised to [0, 1], masks the image; `w_k` is the
  softmax over k of the masked images' target logits. No gradient; one forward pass per map,
  batched through the pass module.
- Layer-CAM (Jiang et al. 2021, "LayerCAM: exploring hierarchical class activation maps for
  localization"): `ReLU(Σ_k ReLU(G_k) ⊙ A_k)`, element-wise weights, no pooling.

Every map is upsampled bilinearly (pixel centres aligned, `align_corners=False`) to the image
size and kept at its raw scale (pytorch-grad-cam also min-max normalises each map; the tests
compare after the same normalisation). The layer is a module name as `model.named_modules()`
gives it; by default the model's CAM layer (`LoadedModel.cam_layer`: the catalogue record's,
else the last convolution). The activations and their gradient come from one hooked pass
(`passes.layer_gradient`); a TorchScript model cannot be hooked and gets a clear
`LayerUnavailable` error.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from engines.core import passes
from engines.core.explain import Context
from engines.core.fills import FILLS, fill_image
from engines.core.registry import Param, Peer, Stage, register
from engines.models.layers import default_layer

LAYER = Param(
    "layer", None, "layer", "The layer whose feature maps are weighted (a module name as model.named_modules() "
    "gives it; the Explore page lists the convolutional layers with their output sizes).",
    optional=True, none_means="the model's CAM layer",
)


def layer_name(model, layer: Optional[str]) -> str:
    """The layer a CAM map of `model` uses: `layer`, or the model's default CAM layer."""
    return layer if layer is not None else default_layer(model)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(N, h, w)` or `(N, K, h, w)` maps resized bilinearly to `size` (H, W), pixel centres aligned."""
    if maps.dim() == 3:
        return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _activations_and_gradient(ctx: Context, layer: Optional[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(A, G)` of the chosen layer for the clean images and their target logits, from one hooked
    forward pass and one backward pass down to the layer (the clean pass of the explanation)."""

    def cotangent(logits: torch.Tensor) -> torch.Tensor:
        ctx.use_logits(logits)
        return ctx.one_hot(ctx.target)

    _, activations, gradient = passes.layer_gradient(ctx.model, ctx.x, layer_name(ctx.model, layer), cotangent)
    return activations, gradient


def grad_cam_map(activations: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at the layer's resolution, `(N, h, w)`: `ReLU(Σ_k mean_ij(G_k) A_k)`."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    return (weights * activations).sum(1).clamp_min(0)


def grad_cam_pp_map(activations: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ at the layer's resolution, `(N, h, w)`: `ReLU(Σ_k w_k A_k)` with
    `w_k = Σ_ij α_ij^k ReLU(G_ij^k)`, `α = G² / (2G² + Σ_ab A_ab G³)`, 0 where that is 0/0."""
    g2 = gradient.pow(2)
    g3 = g2 * gradient
    total = activations.sum(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    denominator = 2 * g2 + total * g3
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1), 0)
    weights = (alpha * gradient.clamp_min(0)).sum(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    return (weights * activations).sum(1).clamp_min(0)


def layer_cam_map(activations: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Layer-CAM at the layer's resolution, `(N, h, w)`: `ReLU(Σ_k ReLU(G_k) ⊙ A_k)`."""
    return (gradient.clamp_min(0) * activations).sum(1).clamp_min(0)


def _gradient_cam(rule):
    def compute(ctx: Context, layer: Optional[str]) -> tuple:
        activations, gradient = _activations_and_gradient(ctx, layer)
        return None, upsample(rule(activations, gradient), tuple(ctx.x.shape[-2:])), False

    compute.__doc__ = rule.__doc__.replace("at the layer's resolution, `(N, h, w)`", "upsampled to the image")
    return compute


# --------------------------------------------------------------------------- peers


def _targets(target, n: int) -> list[int]:
    return [int(t) for t in torch.as_tensor(target).reshape(-1).expand(n)]


def _grad_cam_library(kind: str):
    def build(model, x, target, settings, knob):
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = getattr(pytorch_grad_cam, kind)
        module = passes.hookable_layer(model, layer_name(model, settings["layer"]))
        targets = [ClassifierOutputTarget(t) for t in _targets(target, len(x))]
        selected = _top_channels_transform(settings.get("channels"))

        def call():
            leaf = x.detach().clone().requires_grad_(kind != "ScoreCAM")  # their hooks need a graph
            with cls(model=model, target_layers=[module], **({"reshape_transform": selected} if selected else {})) as cam:
                if knob is not None:
                    cam.batch_size = knob
                return torch.from_numpy(cam(input_tensor=leaf, targets=targets))

        return call

    return build


def _top_channels_transform(channels: Optional[int]):
    """pytorch-grad-cam's `reshape_transform` that keeps the same top channels as our Score-CAM
    (None when every channel is kept)."""
    if channels is None:
        return None
    return lambda activations: _top_channels(activations, channels)[0]


def _from_library(output, settings):
    return output.float()


def _captum_layer_grad_cam(model, x, target, settings, knob):
    from captum.attr import LayerAttribution, LayerGradCam

    module = passes.hookable_layer(model, layer_name(model, settings["layer"]))
    targets = torch.as_tensor(target).reshape(-1).expand(len(x))

    def call():
        attribution = LayerGradCam(model, module).attribute(x, target=targets, relu_attributions=True)
        return LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]), interpolate_mode="bilinear")

    return call


def _captum_to_map(output, settings):
    return output[:, 0].detach().float()


PYTORCH_GRAD_CAM = "pytorch-grad-cam {}"


def _register_gradient_cam(name, label, rule, summary, reference, kind, extra_peers=()):
    register(
        name, label=label, family="cam", signed=False, summary=summary, reference=reference, params=(LAYER,),
        # One hooked forward pass (the clean pass) and one backward pass that stops at the layer;
        # the benchmark's floor counts a whole backward pass, so CAM maps can beat it.
        plan=lambda s, k, hw: [Stage("gradient", 1)],  # already quick: no `quick` settings
        peers=(Peer("pytorch_grad_cam", PYTORCH_GRAD_CAM.format(kind), _grad_cam_library(kind), _from_library),
               *extra_peers),
        live=True,
    )(_gradient_cam(rule))


_register_gradient_cam(
    "grad_cam", "Grad-CAM", grad_cam_map,
    "A layer's feature maps weighted by the mean gradient of the class score over each map.",
    "Selvaraju et al. 2017", "GradCAM",
    (Peer("captum", "Captum LayerGradCam", _captum_layer_grad_cam, _captum_to_map),),
)
_register_gradient_cam(
    "grad_cam_pp", "Grad-CAM++", grad_cam_pp_map,
    "Grad-CAM with pixel-wise weights on the positive gradients, so several instances of a class all show.",
    "Chattopadhay et al. 2018", "GradCAMPlusPlus",
)
_register_gradient_cam(
    "layer_cam", "Layer-CAM", layer_cam_map,
    "Each feature-map pixel weighted by its own positive gradient: sharper maps, usable on earlier layers.",
    "Jiang et al. 2021", "LayerCAM",
)


# --------------------------------------------------------------------------- Score-CAM


def _top_channels(activations: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `channels` feature maps of highest spatial mean per image (all of them, in order, when
    the layer has no more): `(A[:, chosen] (N, c, h, w), chosen (N, c))`."""
    n, k = activations.shape[:2]
    if channels >= k:
        return activations, torch.arange(k, device=activations.device).expand(n, k)
    chosen = activations.mean(dim=(2, 3)).topk(channels, dim=1).indices  # (N, c)
    return activations.gather(1, chosen[:, :, None, None].expand(-1, -1, *activations.shape[2:])), chosen


def score_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Feature maps `(N, c, h, w)` upsampled to `size` and min-max normalised to [0, 1] each,
    `(N, c, H, W)`; a constant map becomes all zeros."""
    up = upsample(activations, size)
    low = up.amin(dim=(2, 3), keepdim=True)
    span = up.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (up - low) / torch.where(span > 0, span, 1), 0)


@register(
    "score_cam",
    label="Score-CAM",
    family="cam",
    signed=False,
    summary="A layer's feature maps weighted by how much the class score keeps when each one masks the image.",
    reference="Wang et al. 2020",
    params=(
        LAYER,
        Param("channels", 128, "int", "Feature maps used as masks, those of highest mean activation (Score-CAM "
              "uses every one: set this to the layer's channel count or more). One forward pass each.",
              low=1, high=4096),
        Param("baseline", "black", "choice", "What the masked-out pixels become (Score-CAM: black).", choices=FILLS),
    ),
    # The clean pass, then one pass per map: `channels` is exact for a layer with at least that
    # many channels (every default CAM layer), and an upper bound for one with fewer.
    plan=lambda s, k, hw: [Stage("forward", 1), Stage("forward", s["channels"])],
    quick=lambda size: {"channels": 4},
    peers=(Peer("pytorch_grad_cam", PYTORCH_GRAD_CAM.format("ScoreCAM"), _grad_cam_library("ScoreCAM"),
                _from_library, knob="batch_size", default=16,
                candidates=lambda s: [2**i for i in range(8) if 2**i <= max(1, s["channels"])],
                comparable=lambda s, hw: s["baseline"] == "black"),),
)
def score_cam(ctx: Context, layer: Optional[str], channels: int, baseline: str) -> tuple:
    """Score-CAM upsampled to the image: `ReLU(Σ_k w_k A_k)` with `w = softmax_k s_c(x ⊙ M_k + b ⊙ (1 − M_k))`,
    `M_k` the k-th feature map upsampled and normalised to [0, 1], `b` the baseline (black).

    The paper subtracts the baseline's score from each masked score; a softmax does not change
    when every score moves by the same amount, so that pass is not needed. The `channels` maps of
    highest mean activation are used (all of them when the layer has no more).
    """
    logits, activations, _ = passes.layer_gradient(ctx.model, ctx.x, layer_name(ctx.model, layer))
    ctx.use_logits(logits)
    kept, _ = _top_channels(activations, channels)  # (N, c, h, w)
    size = tuple(ctx.x.shape[-2:])
    x, fill = ctx.x, fill_image(ctx.x, baseline)
    count = kept.shape[1]

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        masks = score_masks(kept[:, start:stop], size).transpose(0, 1)[:, :, None]  # (m, N, 1, H, W)
        return fill[None] + masks * (x - fill)[None]

    scores = passes.forward_points(ctx.model, points, count, tuple(x.shape), progress=ctx.progress)  # (c, N, K)
    target = ctx.target.to(scores.device)
    chosen = scores[:, torch.arange(len(x), device=scores.device), target].T.float()  # (N, c)
    weights = chosen.softmax(dim=1)[:, :, None, None].to(kept)  # (N, c, 1, 1)
    return None, upsample((weights * kept).sum(1).clamp_min(0), size), False
