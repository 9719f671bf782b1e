"""Linear (tangent) maps, docs/methods.md §1: the gradient family the papers argue against.

gradient (Simonyan et al. 2014), gradient × input (Shrikumar et al. 2016), SmoothGrad
(Smilkov et al. 2017) and integrated gradients (Sundararajan et al. 2017). Each is a short
loop over the shared pass helpers; the maths specific to it and nothing else.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from engines.core import passes
from engines.core.explain import Context
from engines.core.fills import FILLS, fill_image
from engines.core.registry import Param, Peer, Stage, register

REDUCTIONS = ("max_abs", "sum")
RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def reduce_channels(attribution: torch.Tensor, how: str) -> torch.Tensor:
    """Per-pixel map `(N, H, W)` from `(N, C, H, W)`: max over channels of |a|, or the signed sum."""
    if how == "max_abs":
        return attribution.abs().amax(dim=1)
    if how == "sum":
        return attribution.sum(dim=1)
    raise ValueError(f"reduce must be one of {REDUCTIONS}; got {how!r}")


def _reduce_param(default: str) -> Param:
    return Param(
        "reduce", default, "choice", "How channels become one map: max of |·| (unsigned) or the signed sum.",
        choices=REDUCTIONS,
    )


BASELINE = Param("baseline", "black", "choice", "Reference image the attribution is measured from.", choices=FILLS)


def _powers(top: int, cap: int = 64) -> list[int]:
    """1, 2, 4, … up to `top` (and `cap`), plus `top` itself when it is smaller than `cap`: the
    batch sizes worth trying for a peer's fastest setting."""
    sizes = [2**i for i in range(8) if 2**i <= min(top, cap)]
    return sizes + ([top] if top <= cap and top not in sizes else [])


def _as_map(attribution: torch.Tensor, settings: dict) -> torch.Tensor:
    """A peer's per-channel attribution reduced to a map as ours is (the `reduce` setting)."""
    return reduce_channels(attribution, settings["reduce"])


def _captum_saliency(model, x, target, settings, knob):
    from captum.attr import Saliency

    return lambda: Saliency(model).attribute(x, target=target, abs=False)


def _captum_input_x_gradient(model, x, target, settings, knob):
    from captum.attr import InputXGradient

    return lambda: InputXGradient(model).attribute(x, target=target)


def _captum_integrated_gradients(model, x, target, settings, knob):
    from captum.attr import IntegratedGradients

    baseline = fill_image(x, settings["baseline"])
    return lambda: IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=settings["steps"], method=settings["rule"],
        internal_batch_size=knob,
    )


SMOOTHGRAD_VARIANTS = ("mean", "mean_abs", "squared")
"""SmoothGrad's ways to average the gradients g_i of the noisy copies: |mean g_i| (Smilkov et al.),
mean |g_i| (Captum's NoiseTunnel(Saliency)), mean g_i² (SmoothGrad², Hooker et al. 2019)."""

_CAPTUM_SMOOTHGRAD = {  # our variant -> (Captum's nt_type, Saliency's abs): what computes the same mean
    "mean": ("smoothgrad", False),
    "mean_abs": ("smoothgrad", True),
    "squared": ("smoothgrad_sq", False),
}


def _captum_smoothgrad(model, x, target, settings, knob):
    from captum.attr import NoiseTunnel, Saliency

    nt_type, magnitude = _CAPTUM_SMOOTHGRAD[settings["variant"]]
    sigma = settings["noise"] * float(x.max() - x.min())  # our σ: a fraction of the image's range
    return lambda: NoiseTunnel(Saliency(model)).attribute(
        x, nt_type=nt_type, nt_samples=settings["samples"], nt_samples_batch_size=knob, stdevs=sigma,
        target=target, abs=magnitude,
    )


def _smoothgrad_peer(variant: str) -> Peer:
    """Captum's NoiseTunnel set up to average what our `variant` averages; comparable only to it."""
    nt_type, magnitude = _CAPTUM_SMOOTHGRAD[variant]
    label = f"Captum NoiseTunnel({nt_type}, Saliency abs={magnitude})"
    return Peer("captum", label, _captum_smoothgrad, _as_map, knob="nt_samples_batch_size",
                candidates=lambda s: _powers(s["samples"]), comparable=lambda s, hw: s["variant"] == variant)


@register(
    "gradient",
    label="Gradient",
    family="linear",
    signed=False,
    summary="The tangent plane: how the class logit changes for an infinitesimal change of each pixel.",
    reference="Simonyan, Vedaldi, Zisserman 2014; the 'original' map of Llorente et al. 2023",
    params=(_reduce_param("max_abs"),),
    plan=lambda s, k, hw: [Stage("gradient", 1)],
    shares_gradient=True,
    peers=(Peer("captum", "Captum Saliency", _captum_saliency, _as_map),),
    live=True,
)
def gradient(ctx: Context, reduce: str) -> tuple:
    """`g_c = ∂s_c/∂x` (signed attribution); map = max over channels of |g| by default."""
    g = ctx.gradient()
    return g, reduce_channels(g, reduce), reduce == "sum"


@register(
    "gradient_x_input",
    label="Gradient × input",
    family="linear",
    signed=True,
    summary="The gradient weighted by how far each pixel is from a baseline (black by default).",
    reference="Shrikumar et al. 2016",
    params=(BASELINE, _reduce_param("sum")),
    plan=lambda s, k, hw: [Stage("gradient", 1)],
    shares_gradient=True,
    # Captum's InputXGradient measures from black only.
    peers=(Peer("captum", "Captum InputXGradient", _captum_input_x_gradient, _as_map,
                comparable=lambda s, hw: s["baseline"] == "black"),),
    live=True,
)
def gradient_x_input(ctx: Context, baseline: str, reduce: str) -> tuple:
    """`g_c ⊙ (x − baseline)`; the map is the signed channel sum by default."""
    attribution = ctx.gradient() * (ctx.x - fill_image(ctx.x, baseline))
    return attribution, reduce_channels(attribution, reduce), reduce == "sum"


def smoothgrad_noise(samples: int, shape: tuple[int, ...], seed: Optional[int]) -> torch.Tensor:
    """Standard normal noise `(samples, C, H, W)`, the same for every image of a batch, drawn on
    the CPU from `seed` (None: fresh randomness) so results do not depend on the device."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return torch.randn((samples, *shape), generator=generator)


@register(
    "smoothgrad",
    label="SmoothGrad",
    family="linear",
    signed=False,
    summary="The gradient averaged over noisy copies of the image, which removes its speckle.",
    reference="Smilkov et al. 2017",
    params=(
        Param("samples", 25, "int", "Noisy copies averaged.", low=1, high=1000),
        Param("noise", 0.15, "float", "Noise σ as a fraction of the image's value range.", low=0.0, high=1.0,
              unit="fraction of range"),
        Param("seed", 0, "int", "Random seed of the noise.", low=0, high=2**31 - 1, optional=True,
              none_means="fresh randomness"),
        # Default by measurement (python -m engines.faithfulness.defaults; README "Defaults"): mean_abs
        # and squared insert better than mean on photo views and on shapes; mean_abs is Captum's.
        Param("variant", "mean_abs", "choice", "How the noisy gradients g_i are averaged: mean (|mean g_i|, "
              "Smilkov et al.), mean_abs (mean |g_i|, as Captum's NoiseTunnel(Saliency)) or squared "
              "(mean g_i², SmoothGrad²).", choices=SMOOTHGRAD_VARIANTS),
        _reduce_param("max_abs"),
    ),
    plan=lambda s, k, hw: [Stage("forward", 1), Stage("gradient", s["samples"])],
    quick=lambda size: {"samples": 2},
    peers=tuple(_smoothgrad_peer(v) for v in SMOOTHGRAD_VARIANTS),
)
def smoothgrad(ctx: Context, samples: int, noise: float, seed: Optional[int], variant: str, reduce: str) -> tuple:
    """SmoothGrad (Smilkov et al. 2017) and SmoothGrad² (Hooker et al. 2019): with
    `g_i = g_c(clip(x + ε_i))`, `ε_i ~ N(0, σ²)`, σ = noise × (max − min of x), i = 1 … n, the
    attribution is `mean_i g_i` (variant "mean", signed), `mean_i |g_i|` ("mean_abs") or
    `mean_i g_i²` ("squared"), then reduced over channels (`reduce`).

    With `reduce="max_abs"` the "mean" map is |mean g_i| (opposite signs cancel), the "mean_abs"
    map mean |g_i| (they do not; what Captum's NoiseTunnel(Saliency) computes), the "squared"
    map mean g_i² (large gradients weigh more)."""
    x = ctx.x
    sigma = noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))  # (N,)
    eps = smoothgrad_noise(samples, tuple(x.shape[1:]), seed).to(x.device)  # (n, C, H, W)

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        return (x[None] + eps[start:stop, None] * sigma[None, :, None, None, None]).clamp(0, 1)

    def partial(done: int, running: torch.Tensor) -> None:  # preview: the mean over the first samples
        ctx.preview(lambda: reduce_channels((running * (samples / done)).float(), reduce), done, samples)

    weights = torch.full((samples,), 1.0 / samples)
    transform = {"mean": None, "mean_abs": torch.abs, "squared": torch.square}[variant]
    g = passes.gradient_sum(ctx.model, points, samples, tuple(x.shape), ctx.target, weights, transform=transform,
                            progress=ctx.progress, partial=partial if ctx.previewing else None)
    return g, reduce_channels(g, reduce), reduce == "sum" and variant == "mean"


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points `α_k` in [0, 1] and weights `w_k` with `∫₀¹ f ≈ Σ w_k f(α_k)`.

    Gauss–Legendre and the left/middle/right Riemann sums are Captum's exactly; the trapezoid
    rule is the textbook one (see below), which Captum's is not.
    """
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.tensor(0.5 * (nodes + 1)), torch.tensor(0.5 * weights)
    if steps < 2:
        raise ValueError(f"steps must be at least 2 for the {rule} rule; got {steps}")
    if rule == "riemann_trapezoid":
        # The true trapezoid rule on a grid spaced 1/(n−1). Captum's weights are 1/n here, so
        # they sum to (n−1)/n and its completeness error only shrinks as 1/n; ours as 1/n².
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, steps, dtype=torch.float64), weights
    weights = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (torch.arange(steps, dtype=torch.float64) + offset) / steps, weights


def spread_order(count: int) -> torch.Tensor:
    """`0 … count−1` in bit-reversed order (0, n/2, n/4, 3n/4, …): every prefix is spread
    evenly over the range, so a partial sum along a path already samples all of it."""
    bits = max(1, (count - 1).bit_length())
    reversed_ = [int(format(k, f"0{bits}b")[::-1], 2) for k in range(1 << bits)]
    return torch.tensor([k for k in reversed_ if k < count])


@register(
    "integrated_gradients",
    label="Integrated gradients",
    family="linear",
    signed=True,
    summary="Gradients averaged along the straight path from a baseline to the image, times the difference.",
    reference="Sundararajan, Taly, Yan 2017",
    params=(
        Param("steps", 32, "int", "Points on the path.", low=1, high=1024),
        BASELINE,
        Param("rule", "gausslegendre", "choice", "Quadrature rule along the path.", choices=RULES),
        _reduce_param("sum"),
    ),
    plan=lambda s, k, hw: [Stage("forward", 1), Stage("gradient", s["steps"])],
    quick=lambda size: {"steps": 2},
    peers=(Peer("captum", "Captum IntegratedGradients", _captum_integrated_gradients, _as_map,
                knob="internal_batch_size", candidates=lambda s: _powers(s["steps"])),),
    live=True,
)
def integrated_gradients(ctx: Context, steps: int, baseline: str, rule: str, reduce: str) -> tuple:
    """`(x − x') ⊙ Σ_k w_k g_c(x' + α_k (x − x'))`; sums to `s_c(x) − s_c(x')` up to quadrature error.

    The path's points are visited in `spread_order`, so a preview (the partial sum, rescaled by
    the weights seen so far) already covers the whole path; the sum is the same in any order."""
    x = ctx.x
    start_image = fill_image(x, baseline)
    alphas, weights = quadrature(rule, steps)
    order = spread_order(steps)
    alphas, weights = alphas[order].to(x), weights[order]

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        a = alphas[start:stop, None, None, None, None]
        return start_image[None] + a * (x - start_image)[None]

    def partial(done: int, running: torch.Tensor) -> None:
        scale = float(weights.sum() / weights[:done].sum())
        ctx.preview(lambda: reduce_channels(((x - start_image) * running * scale).float(), reduce), done, steps)

    mean_grad = passes.gradient_sum(ctx.model, points, steps, tuple(x.shape), ctx.target, weights,
                                    progress=ctx.progress, partial=partial if ctx.previewing else None)
    attribution = (x - start_image) * mean_grad
    return attribution, reduce_channels(attribution, reduce), reduce == "sum"
