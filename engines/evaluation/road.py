"""ROAD, "remove and debias" (Rong, Leemann, Borisov, Kasneci, Kasneci, "A consistent and
efficient evaluation strategy for attribution methods", ICML 2022).

Deletion with a constant fill rewards maps whose removed pixels make an out-of-distribution
image (a black square says "something was here" by its shape). ROAD removes pixels by *noisy
linear imputation* instead: every removed pixel takes the weighted mean of its 8 neighbours
(direct neighbours 1/6, diagonal ones 1/12; neighbours outside the image left out and the
weights renormalised), removed neighbours being unknowns of the same sparse linear system,
solved jointly; then small Gaussian noise is added. The filled region carries no information
about its shape, so the curve measures what the pixels said, not where they were.

- `impute(x, removed, noise, seed)`: the imputation itself (pytorch-grad-cam's
  `NoisyLinearImputer` with `noise=0` is the same linear system, solved by SciPy).
- `road_curve(model, x, map, order="most"|"least")`: the target's softmax probability as the most
  (MoRF) or least (LeRF) salient pixels are removed this way; a `Curve` like `deletion_curve`.

The system is symmetric positive definite (it is a weighted graph Laplacian restricted to the
removed pixels, and every connected group of removed pixels touches a kept one unless the whole
image is removed), so it is solved by conjugate gradients, Jacobi-preconditioned, started from the
solution of the same problem at half the resolution (a cascade down to 16 pixels): every image,
channel and curve point is one batched problem of 3×3 convolutions on the model's device.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from engines.core import passes
from engines.core.explain import Target, as_module, check_images, resolve_target
from engines.evaluation.metrics import Curve, _check_fractions, _trapezoid
from engines.families.occlusion import check_map, pixel_ranks

ROAD_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Fractions of pixels removed: Rong et al.'s 10 % … 90 % and the clean image. Never 1: with every
pixel removed nothing is left to impute from."""

ROAD_NOISE = 0.01
"""Standard deviation of the noise added to imputed pixels, in pixel units (Rong et al. add
noise of this order so the imputed region is not perfectly smooth)."""

ORDERS = ("most", "least")

_WEIGHTS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
"""Rong et al.'s neighbour weights: 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones."""


def _neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """`Σ_j w_j v(neighbour j)` for fields `(B, 1, H, W)`; outside the image counts as 0."""
    return F.conv2d(v, _WEIGHTS.to(v).reshape(1, 1, 3, 3), padding=1)


def _solve(known: torch.Tensor, removed: torch.Tensor, tolerance: float, max_iterations: int) -> torch.Tensor:
    """Values `(B, 1, H, W)` that equal `known` off `removed` and, on it, the weighted mean of
    their neighbours: `D u − S(u) = S(known)` on the removed pixels (D = the sum of in-image
    neighbour weights, S the neighbour sum), by preconditioned conjugate gradients."""
    b, _, h, w = known.shape
    m = removed.to(known.dtype)  # (B, 1, H, W), 1 where the value is unknown
    kept = known * (1 - m)
    diagonal = _neighbour_sum(torch.ones_like(known[:1]))  # (1, 1, H, W): the weights inside the image
    guess = kept.sum(dim=(2, 3), keepdim=True) / (1 - m).sum(dim=(2, 3), keepdim=True).clamp(min=1)  # mean colour
    guess = guess.expand_as(known)
    if min(h, w) > 16:  # the half-resolution problem's solution is the starting point
        coarse_weight = F.avg_pool2d(1 - m, 2, ceil_mode=True)
        coarse = F.avg_pool2d(kept, 2, ceil_mode=True) / coarse_weight.clamp(min=1e-12)
        start = _solve(coarse, coarse_weight == 0, tolerance, max_iterations)
        guess = F.interpolate(start, size=(h, w), mode="bilinear", align_corners=False)

    def operator(u: torch.Tensor) -> torch.Tensor:
        return m * (diagonal * u - _neighbour_sum(m * u))

    rhs = m * _neighbour_sum(kept)
    u = m * guess
    residual = rhs - operator(u)
    z = residual / diagonal
    direction = z
    rz = (residual * z).sum(dim=(1, 2, 3), keepdim=True)
    for _ in range(max_iterations):
        if z.abs().amax() <= tolerance:  # no pixel is further than `tolerance` from its neighbours' mean
            break
        a_direction = operator(direction)
        step = rz / (direction * a_direction).sum(dim=(1, 2, 3), keepdim=True).clamp(min=1e-30)
        u = u + step * direction
        residual = residual - step * a_direction
        z = residual / diagonal
        rz_next = (residual * z).sum(dim=(1, 2, 3), keepdim=True)
        direction = z + (rz_next / rz.clamp(min=1e-30)) * direction
        rz = rz_next
    return kept + m * u


def impute(
    x: torch.Tensor,
    removed: torch.Tensor,
    noise: float = ROAD_NOISE,
    seed: int = 0,
    *,
    tolerance: float = 1e-5,
    max_iterations: int = 2000,
) -> torch.Tensor:
    """Noisy linear imputation (Rong et al. 2022): `x` `(N, C, H, W)` with the pixels of
    `removed` `(N, H, W)` (bool, True = removed) replaced, channel by channel, by the solution
    of "each removed pixel is the weighted mean of its in-image neighbours" (direct 1/6,
    diagonal 1/12, renormalised at the border; removed neighbours are unknowns of the same
    system), plus Gaussian noise of σ = `noise` (pixel units, drawn on the CPU from `seed`,
    one pattern shared by the batch), clipped to [0, 1]. Kept pixels are unchanged. An image
    with every pixel removed is refused (ValueError): nothing is left to impute from.
    `tolerance` is the conjugate-gradient stop, in pixel units: no removed pixel differs from
    its neighbours' weighted mean by more (1e-5 keeps the solution within about 1e-3 of SciPy's
    exact one on 224² images with large holes, well under the added noise).
    """
    n, c, h, w = x.shape
    if removed.shape != (n, h, w):
        raise ValueError(f"removed must be a bool mask of shape {(n, h, w)}; got {tuple(removed.shape)}")
    removed = removed.to(device=x.device, dtype=torch.bool)
    if removed.flatten(1).all(dim=1).any():
        raise ValueError("every pixel of an image is removed: ROAD needs some kept pixels to impute from")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1:
        raise ValueError(f"noise must be a number in [0, 1] (pixel units); got {noise!r}")
    values = x.float().reshape(n * c, 1, h, w)  # (N·C, 1, H, W): one problem per image and channel
    mask = removed[:, None].expand(n, c, h, w).reshape(n * c, 1, h, w)
    filled = _solve(values, mask, tolerance, max_iterations).reshape(n, c, h, w).to(x.dtype)
    if noise > 0:
        generator = torch.Generator().manual_seed(int(seed))
        jitter = torch.randn((c, h, w), generator=generator).to(x) * noise
        filled = torch.where(removed[:, None], (filled + jitter).clamp(0, 1), filled)
    return filled


def removal_masks(saliency: torch.Tensor, fractions: torch.Tensor, order: str) -> torch.Tensor:
    """Masks `(P, N, H·W)` of the pixels removed at each fraction: the ⌊p·H·W⌋ highest-ranked
    (`order="most"`) or lowest-ranked (`"least"`) pixels of `pixel_ranks` (ties in raster order)."""
    pixels = saliency.shape[1] * saliency.shape[2]
    ranks = pixel_ranks(saliency)  # (N, H·W), 0 = most salient
    if order == "least":
        ranks = pixels - 1 - ranks
    counts = torch.tensor([int(round(float(p) * pixels, 9) // 1) for p in fractions], device=saliency.device)
    return ranks[None] < counts[:, None, None]


def road_curve(
    model: Any,
    x: torch.Tensor,
    saliency_map: torch.Tensor,
    order: str = "most",
    target: Target = None,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    *,
    noise: float = ROAD_NOISE,
    seed: int = 0,
    progress: passes.Progress = None,
) -> Curve:
    """ROAD (Rong et al. 2022): the softmax probability of the target class as the most
    (`order="most"`, MoRF: lower AUC is better) or least (`"least"`, LeRF: higher is better)
    salient pixels are removed by noisy linear imputation (`impute`).

    Pixels are ranked by the map's value (`pixel_ranks`; ties in raster order); at fraction p the
    ⌊p·H·W⌋ first (or last) are removed. `fractions` ascending in [0, 1), Rong et al.'s 0.1 … 0.9
    and the clean image by default; AUC is the trapezoid over them (at most 0.9 by default).
    `target=None` follows the clean image's predicted class (the clean image rides in the same
    batched pass). Every imputation of every point is one batched solve; one batched forward pass.
    """
    module = as_module(model)
    x = check_images(x).to(passes.model_device(module))
    saliency = check_map(saliency_map, x)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(repr(o) for o in ORDERS)} (relevant first); got {order!r}")
    grid = _check_fractions(fractions)
    if grid[-1] >= 1:
        raise ValueError(f"fractions must be below 1: with every pixel removed nothing is left to impute; got {fractions!r}")
    n, c, h, w = x.shape
    removed = removal_masks(saliency, grid, order)  # (P, N, H·W)
    p = len(grid)
    images = impute(x.repeat(p, 1, 1, 1), removed.reshape(p * n, h, w), noise, seed).reshape(p, n, c, h, w)
    clean = torch.cat([x[None], images])  # (1 + P, N, C, H, W): the clean image first, for the target

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        return clean[start:stop]

    logits = passes.forward_points(module, points, p + 1, tuple(x.shape), progress=progress).float().cpu()
    chosen = resolve_target(target, logits[0]).cpu()
    probabilities = logits[1:].softmax(dim=2).gather(2, chosen[None, :, None].expand(p, n, 1))[..., 0]  # (P, N)
    values = probabilities.T.contiguous()  # (N, P)
    label = "most relevant first" if order == "most" else "least relevant first"
    return Curve(grid, values, _trapezoid(values, grid), f"ROAD ({label})", chosen,
                 removed.double().mean(dim=2).T.contiguous().cpu())
