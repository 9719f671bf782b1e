"""Nonlinear maps, docs/methods.md §3: our nonlinear family, after Rosenzweig, Cvetkovic & Rosenzweig,
"When saliency goes off on a tangent: Interpreting deep neural networks with nonlinear saliency
maps" (arXiv:2110.06639, 2021).

A gradient map is the model's tangent plane at x. The maps here measure what the score does
under *finite* changes of the input instead. The paper's exact formula is not available to us:
these meet the properties it states (they agree with the gradient where the model is locally
linear and differ where it is not) and are ours, not its authors' algorithm.

* `secant`: finite-difference response of the target logit to brightening (and/or darkening)
  each p×p region by ε, per unit of brightness: the region-summed gradient as ε → 0.
* `nonlinearity`: how far the true response of each region leaves its tangent line over
  t ∈ [−T, T]; zero for a linear model. `response_curve` is the same probe for one region.
* `gradient_flow`: attribution along the curved path of steepest descent of the target logit,
  which needs no baseline image and sums to the score drop along the path.

Brightness steps are in pixel units (the image in [0, 1]); a region's step `1_r` raises every
channel of its pixels, and perturbed images are clipped to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from engines.core import lane, passes, refine
from engines.core.explain import Context, Target, as_module, check_images, resolve_target
from engines.core.registry import Param, Stage, register

REFERENCE = (
    "Our nonlinear family, after Rosenzweig, Cvetkovic & Rosenzweig, 'When saliency goes off on a "
    "tangent', arXiv:2110.06639 (their exact formula is unavailable; this is not their algorithm)"
)
DIRECTIONS = ("central", "brighten", "darken")
"""The costs in the registry are for a 224 × 224 image: the region count depends on the image."""

PATCH = Param(
    "patch", 16, "int",
    "Side of the square regions perturbed together, in pixels; the last row and column of regions "
    "may be smaller. Must not exceed the image.",
    low=1, high=4096, unit="pixels",
)
EPSILON = Param(
    "epsilon", 0.1, "float", "Brightness step of a region for the finite difference.",
    low=1e-4, high=1.0, unit="pixel units",
)
DIRECTION = Param(
    "direction", "central", "choice",
    "central: (brighten − darken) / 2ε; brighten: (brighten − clean) / ε; darken: (clean − darken) / ε.",
    choices=DIRECTIONS,
)
SPAN = Param(
    "span", 0.25, "float", "Largest brightness step t of a region: t runs over [−span, span].",
    low=1e-4, high=1.0, unit="pixel units",
)
POINTS = Param(
    "points", 5, "int",
    "Steps t sampled evenly in [−span, span]; t = 0 costs nothing. The largest departure from the "
    "tangent is mostly at t = ±span, so few points suffice.",
    low=2, high=201,
)
STEPS = Param("steps", 32, "int", "Largest number of descent steps (fewer if the prediction changes).", low=1, high=1000)
STEP_SIZE = Param(
    "step_size", 0.02, "float",
    "Length of one descent step: the L2 norm of the whole image's change. ImageNet predictions "
    "typically change within an L2 distance of 0.02–0.3, so small steps are needed for the path "
    "integral to be accurate.",
    low=1e-4, high=100.0, unit="pixel units (L2)",
)


# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class RegionGrid:
    """The p×p regions covering an H×W image, numbered row by row.

    Region `r` covers rows `r0:r1` and columns `c0:c1` of `boxes[r]`; the last row and column
    of regions are smaller when p does not divide H or W.
    """

    height: int
    width: int
    patch: int

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.patch)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.patch)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """`(row0, row1, col0, col1)` in pixels for every region, in region order."""
        p = self.patch
        return [
            (i * p, min(self.height, (i + 1) * p), j * p, min(self.width, (j + 1) * p))
            for i in range(self.rows)
            for j in range(self.cols)
        ]

    def index(self, row: int, col: int) -> int:
        """The number of the region at grid position (row, col); ValueError if outside the grid."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ValueError(
                f"region must be a (row, col) in [0, {self.rows - 1}] × [0, {self.cols - 1}] for patch "
                f"{self.patch} on a {self.height}×{self.width} image; got {(row, col)}"
            )
        return row * self.cols + col

    def labels(self, device: Any = "cpu") -> torch.Tensor:
        """The region number of every pixel, `(H, W)` long."""
        rows = torch.arange(self.height, device=device) // self.patch
        cols = torch.arange(self.width, device=device) // self.patch
        return rows[:, None] * self.cols + cols[None, :]

    def sizes(self, device: Any = "cpu") -> torch.Tensor:
        """Pixels in each region, `(R,)` float."""
        return torch.bincount(self.labels(device).flatten(), minlength=self.count).float()

    def indicator(self, regions: torch.Tensor) -> torch.Tensor:
        """`1_r` for each region number in `regions` `(m,)`, as `(m, H, W)` float on its device."""
        return (self.labels(regions.device)[None] == regions[:, None, None]).float()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over each region's pixels of `values` `(N, H, W)`: `(N, R)`."""
        labels = self.labels(values.device).flatten()
        out = torch.zeros(values.shape[0], self.count, dtype=values.dtype, device=values.device)
        return out.index_add_(1, labels, values.flatten(1))

    def totals(self, values: torch.Tensor) -> torch.Tensor:
        """A map `(N, H, W)` giving each pixel the sum of `values` `(N, H, W)` over its region (a
        spread map shown region by region, in the units of `v_r`)."""
        return self.sum(values)[:, self.labels(values.device)]  # (N, H, W)

    def spread(self, per_region: torch.Tensor) -> torch.Tensor:
        """A map `(N, H, W)` giving each pixel `v_r / |r|` from `per_region` `(N, R)`: summing
        the map over region r's pixels gives back `v_r`."""
        density = per_region / self.sizes(per_region.device)  # (N, R)
        return density[:, self.labels(per_region.device)]  # (N, H, W)


def region_grid(height: int, width: int, patch: int) -> RegionGrid:
    """The regions of side `patch` covering an H×W image; ValueError if a region exceeds it."""
    patch = PATCH.check(patch)
    if patch > min(height, width):
        raise ValueError(
            f"patch must be an integer in [1, {min(height, width)}] for a {height}×{width} image; got {patch}"
        )
    return RegionGrid(height, width, patch)


# --------------------------------------------------------------------------- shared pieces


def region_scores(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    grid: RegionGrid,
    regions: torch.Tensor,
    shifts: torch.Tensor,
    *,
    progress: passes.Progress = None,
    partial: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """`s_target(clip(x + shifts[j]·1_{regions[j]}, 0, 1))` for every j, shape `(J, N)`.

    `x` is `(N, C, H, W)` in pixel units, `regions` `(J,)` long and `shifts` `(J,)` in pixel
    units. The J perturbed copies are built chunk by chunk as the model asks for them.
    `partial(done, scores (done, N))` is called after each chunk, for previews.
    """
    regions, shifts = regions.to(x.device), shifts.to(x)
    target = target.to(x.device)

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        step = shifts[start:stop, None, None] * grid.indicator(regions[start:stop])  # (m, H, W)
        return (x[None] + step[:, None, None]).clamp(0, 1)

    def pick(logits: torch.Tensor) -> torch.Tensor:  # (J, N, K) → (J, N)
        return logits.gather(2, target.to(logits.device)[None, :, None].expand(len(logits), -1, 1))[..., 0].to(x)

    seen = None if partial is None else (lambda done, logits: partial(done, pick(logits)))
    logits = passes.forward_points(model, points, len(regions), tuple(x.shape), progress=progress, partial=seen)
    return pick(logits)  # (J, N)


def tangent_changes(gradient: torch.Tensor, x: torch.Tensor, grid: RegionGrid, shifts: torch.Tensor) -> torch.Tensor:
    """First-order score changes `Σ_{i∈r} g_i · (clip(x_i + t, 0, 1) − x_i)`, shape `(K, N, R)`.

    For each step t in `shifts` `(K,)` and region r. While x + t stays in [0, 1] this is
    `t · Σ_{i∈r} g_i`, the tangent line; clipped pixels contribute only the change applied.
    """
    rows = []
    for t in shifts.tolist():  # K is small; each term is vectorised over images and pixels
        applied = (x + t).clamp(0, 1) - x  # (N, C, H, W)
        rows.append(grid.sum((gradient * applied).sum(1)))  # (N, R)
    return torch.stack(rows)  # (K, N, R)


def steps_in_span(span: float, points: int) -> torch.Tensor:
    """`points` steps evenly spaced over [−span, span], float64, with t = 0 exactly when `points` is odd."""
    k = torch.arange(points, dtype=torch.float64)
    return span * (2 * k - (points - 1)) / (points - 1)


def _target_scores(ctx: Context) -> torch.Tensor:
    """`s_c(x)` of the clean images, `(N,)`."""
    return ctx.logits.gather(1, ctx.target[:, None])[:, 0]


# --------------------------------------------------------------------------- 3a. secant


def region_secants(ctx: Context, grid: RegionGrid, epsilon: float, direction: str) -> torch.Tensor:
    """The finite difference `S_r(ε)` of every region, `(N, R)`, in logit per unit brightness.

    central `[s(x + ε1_r) − s(x − ε1_r)] / 2ε`; brighten `[s(x + ε1_r) − s(x)] / ε`; darken
    `[s(x) − s(x − ε1_r)] / ε`, with perturbed images clipped to [0, 1]. As ε → 0 (inside
    [0, 1]) `S_r → Σ_{i∈r} Σ_channels g_c,i`, the region-summed gradient.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    signs = {"central": (1.0, -1.0), "brighten": (1.0,), "darken": (-1.0,)}[direction]
    clean = _target_scores(ctx)[:, None]  # (N, 1)

    def secants(scores: torch.Tensor) -> torch.Tensor:  # (D, N, r) → (N, r)
        if direction == "central":
            return (scores[0] - scores[1]) / (2 * epsilon)
        if direction == "brighten":
            return (scores[0] - clean) / epsilon
        return (clean - scores[0]) / epsilon

    return _by_region(ctx, grid, torch.tensor(signs) * epsilon, secants)


def _by_region(ctx: Context, grid: RegionGrid, shifts: torch.Tensor, combine: Callable) -> torch.Tensor:
    """`combine(scores)` for every region, `(N, R)`, where `scores` `(D, N, r)` are the target
    scores of r regions each shifted by every one of the D `shifts`.

    Regions are visited coarse to fine (`refine.coarse_to_fine`), all shifts of a region
    together, so previews (each computed region's value, spread to its nearest uncomputed
    neighbours) cover the image early; the result does not depend on the order."""
    d, count = len(shifts), grid.count
    order = refine.coarse_to_fine(grid.rows, grid.cols)  # (R,)
    regions = order.repeat_interleave(d)  # (J,), region-major in coarse-to-fine order
    steps = shifts.repeat(count)  # (J,)

    def per_region(scores: torch.Tensor) -> torch.Tensor:  # (J', N) for the first J' jobs → (N, r)
        r = len(scores) // d
        return combine(scores[: r * d].reshape(r, d, -1).permute(1, 2, 0))  # (D, N, r) → (N, r)

    def partial(done: int, scores: torch.Tensor) -> None:
        finished = done // d
        if finished < min(count, 4):
            return

        def make() -> torch.Tensor:
            values = torch.zeros(len(ctx.x), count, dtype=ctx.x.dtype, device=ctx.x.device)
            values[:, order[:finished].to(values.device)] = per_region(scores).to(values)
            computed = torch.zeros(count, dtype=torch.bool)
            computed[order[:finished]] = True
            return grid.spread(refine.filled(values, computed, grid.rows, grid.cols))

        ctx.preview(make, done, len(regions))

    scores = region_scores(ctx.model, ctx.x, ctx.target, grid, regions, steps, progress=ctx.progress,
                           partial=partial if ctx.previewing else None)  # (J, N)
    result = torch.empty(len(ctx.x), count, dtype=scores.dtype, device=scores.device)
    result[:, order.to(scores.device)] = per_region(scores)
    return result  # (N, R)


def _regions(patch: int, hw: tuple[int, int]) -> int:
    """Regions of a patch grid over an (H, W) image (edge regions may be smaller)."""
    return math.ceil(hw[0] / patch) * math.ceil(hw[1] / patch)


@register(
    "secant",
    label="Secant (finite difference)",
    family="nonlinear",
    signed=True,
    summary=(
        "How the class logit changes when a whole region is brightened or darkened by a finite "
        "step: our nonlinear family, after Rosenzweig et al."
    ),
    reference=REFERENCE,
    params=(EPSILON, PATCH, DIRECTION),
    plan=lambda s, k, hw: [
        Stage("forward", 1 + (2 if s["direction"] == "central" else 1) * _regions(s["patch"], hw))
    ],
    quick=lambda size: {"patch": max(1, min(size) // 2)},
)
def secant(ctx: Context, epsilon: float, patch: int, direction: str) -> tuple:
    """Finite-difference map at magnitude ε (pixel units, default 0.1) over patch × patch regions
    (default 16 pixels): `S_r(ε)` of `region_secants`, spread so each pixel of region r holds
    `S_r / |r|` (the map summed over r gives `S_r`; as ε → 0 it tends to the gradient's channel
    sum averaged over each region). Signed. Cost for R regions: 2R forward passes (central) or R
    (one-sided), plus the clean pass. Our nonlinear family, after Rosenzweig et al.
    (arXiv:2110.06639)."""
    grid = region_grid(ctx.x.shape[2], ctx.x.shape[3], patch)
    return None, grid.spread(region_secants(ctx, grid, epsilon, direction)), True


# --------------------------------------------------------------------------- 3b. nonlinearity


def region_nonlinearity(ctx: Context, grid: RegionGrid, span: float, points: int) -> torch.Tensor:
    """`NL_r = max_t |s_c(x + t·1_r) − s_c(x) − Σ_{i∈r} g_c,i·δ_i(t)|` for every region, `(N, R)`.

    t runs over `points` values evenly spaced in [−span, span] (pixel units); `δ(t) = clip(x +
    t, 0, 1) − x` is the change applied, so the tangent term is `t·Σ_{i∈r} g_c,i` wherever no
    pixel is clipped. t = 0 adds nothing and is not evaluated. Logit units; zero for a linear model.
    """
    shifts = steps_in_span(span, points)
    shifts = shifts[shifts != 0]  # (K,)
    tangent = tangent_changes(ctx.gradient(), ctx.x, grid, shifts.to(ctx.x))  # (K, N, R)
    clean = _target_scores(ctx)[None, :, None]  # (1, N, 1)
    order = refine.coarse_to_fine(grid.rows, grid.cols).to(ctx.x.device)

    def off_tangent(scores: torch.Tensor) -> torch.Tensor:  # (K, N, r), regions in coarse-to-fine order
        line = tangent[:, :, order[: scores.shape[2]]]  # (K, N, r)
        return (scores - clean - line).abs().amax(0)  # (N, r)

    return _by_region(ctx, grid, shifts, off_tangent)


def _nonzero_steps(points: int) -> int:
    return points - (points % 2)


@register(
    "nonlinearity",
    label="Nonlinearity (off the tangent)",
    family="nonlinear",
    signed=False,
    summary=(
        "How far each region's true response to brightening and darkening leaves the gradient's "
        "tangent line: large where the gradient misleads. Our nonlinear family, after Rosenzweig et al."
    ),
    reference=REFERENCE,
    params=(SPAN, POINTS, PATCH),
    plan=lambda s, k, hw: [
        Stage("gradient", 1), Stage("forward", _nonzero_steps(s["points"]) * _regions(s["patch"], hw))
    ],
    shares_gradient=True,
    quick=lambda size: {"patch": max(1, min(size) // 2), "points": 3},
)
def nonlinearity(ctx: Context, span: float, points: int, patch: int) -> tuple:
    """Off-the-tangent map: `NL_r` of `region_nonlinearity` over t in [−span, span] (pixel units,
    default 0.25, `points` steps, default 5) on patch × patch regions (default 16), spread so each
    pixel of region r holds `NL_r / |r|` (the map summed over r gives `NL_r`). Unsigned. Cost for
    R regions: K·R forward passes (K = the non-zero steps) + the shared forward and backward pass
    of the gradient. Our nonlinear family, after Rosenzweig et al. (arXiv:2110.06639)."""
    grid = region_grid(ctx.x.shape[2], ctx.x.shape[3], patch)
    return None, grid.spread(region_nonlinearity(ctx, grid, span, points)), False


@dataclass
class ResponseCurve:
    """One region's response to brightness steps, against its tangent line (CPU tensors).

    `t` `(P,)` steps in pixel units; `scores` `(P,)` the true `s_c(clip(x + t·1_r))`; `tangent`
    `(P,)` the first-order prediction `s_c(x) + Σ_{i∈r} g_c,i·δ_i(t)`, which is the line
    `score + t·slope` while x + t·1_r stays in [0, 1]; `region` `(row0, row1, col0, col1)` in
    pixels; `target` the class c; `score` `s_c(x)`; `slope` `Σ_{i∈r} g_c,i` (summed over the
    region's pixels and channels); `nonlinearity` `max |scores − tangent|`.
    """

    t: torch.Tensor
    scores: torch.Tensor
    tangent: torch.Tensor
    region: tuple[int, int, int, int]
    target: int
    score: float
    slope: float
    nonlinearity: float


def response_curve(
    model: Any,
    x: torch.Tensor,
    region: tuple[int, int],
    target: Target = None,
    span: float = 0.25,
    points: int = 21,
    patch: int = 16,
) -> ResponseCurve:
    """The dashboard's probe: `s_c(x + t·1_r)` against its tangent for one region of one image.

    `x` is `(1, C, H, W)` in pixel units; `region` the `(row, col)` of a region in the grid of
    side `patch` (pixels, default 16); t runs over `points` (default 21) steps evenly spaced in
    [−span, span] (pixel units, default 0.25); `target` defaults to the predicted class. `model`
    is an `nn.Module` or a `LoadedModel`. Cost: `points` forward passes + one forward and
    backward. Our nonlinear family, after Rosenzweig et al. (arXiv:2110.06639).
    """
    with lane.urgent():  # a short interactive call: ahead of the next chunk of any long map
        return _response_curve(as_module(model), x, region, target, span, points, patch)


def _response_curve(module: nn.Module, x: torch.Tensor, region: tuple[int, int], target: Target, span: float,
                    points: int, patch: int) -> ResponseCurve:
    x = check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"response_curve takes one image (1, C, H, W); got shape {tuple(x.shape)}")
    span, points = SPAN.check(span), POINTS.check(points)
    grid = region_grid(x.shape[2], x.shape[3], patch)
    r = grid.index(*region)
    x = x.to(passes.model_device(module))
    chosen: list[torch.Tensor] = []

    def pick(logits: torch.Tensor) -> torch.Tensor:  # (1, K) one-hot of the target
        chosen.append(resolve_target(target, logits))
        return torch.nn.functional.one_hot(chosen[0], logits.shape[1]).float()

    logits, gradient = passes.input_gradient(module, x, pick)
    c = chosen[0]
    score = logits[0, c[0]].to(x)
    t = steps_in_span(span, points)  # (P,)
    scores = region_scores(module, x, c, grid, torch.full((points,), r), t)[:, 0]  # (P,)
    tangent = score + tangent_changes(gradient, x, grid, t.to(x))[:, 0, r]  # (P,)
    slope = grid.sum(gradient.sum(1))[0, r]
    return ResponseCurve(
        t=t.float().cpu(),
        scores=scores.float().cpu(),
        tangent=tangent.float().cpu(),
        region=grid.boxes[r],
        target=int(c[0]),
        score=float(score),
        slope=float(slope),
        nonlinearity=float((scores - tangent).abs().max()),
    )


# --------------------------------------------------------------------------- 3c. gradient flow


@dataclass
class FlowPath:
    """A path of steepest descent of the target logit and the attribution along it.

    `attribution` `(N, C, H, W)` = `Σ_t ½(g_t + g_{t+1}) ⊙ (x_t − x_{t+1})`; `end` `(N, C, H, W)`
    the last point x_T of each image's path; `steps_taken` `(N,)` its T; `start_scores` and
    `end_scores` `(N,)` the target logits at x_0 and x_T as seen along the way.
    """

    attribution: torch.Tensor
    end: torch.Tensor
    steps_taken: torch.Tensor
    start_scores: torch.Tensor
    end_scores: torch.Tensor


def flow_path(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    steps: int = 32,
    step_size: float = 0.02,
    *,
    start: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    progress: passes.Progress = None,
    partial: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> FlowPath:
    """Steepest descent of `s_c` from x: `x_{t+1} = clip(x_t − η·g_t/‖g_t‖, 0, 1)`, η = `step_size`
    (pixel units, L2 norm over the whole image), for at most `steps` steps.

    An image stops moving after the step that changes its predicted class (that point is its
    end), or when its gradient vanishes. `x` is `(N, C, H, W)` on the model's device, `target`
    `(N,)`; `start` may pass the clean `(logits, gradient)` already known (one pass saved). Every
    step is one batched forward and backward pass over the images still moving. The trapezoid
    rule uses g at both ends of each step, so the attribution sums to `s_c(x_0) − s_c(x_T)` up
    to the rule's error, which shrinks as η². `partial(step, attribution)` is called after each
    step with the attribution along the path so far, for previews.
    """
    steps, step_size = STEPS.check(steps), STEP_SIZE.check(step_size)
    n = len(x)
    target = target.to(x.device)
    rows = torch.arange(n, device=x.device)

    def target_gradient(points: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def pick(logits: torch.Tensor) -> torch.Tensor:  # (M, K) one-hot of each image's target
            return torch.nn.functional.one_hot(target[which], logits.shape[1]).to(logits)

        return passes.input_gradient(model, points, pick)

    logits, g = start if start is not None else target_gradient(x, rows)
    logits, g = logits.to(x.device), g.to(x).clone()  # g is updated in place: never the shared one
    predicted = logits.argmax(1)  # (N,)
    start_scores = logits[rows, target]
    end_scores = start_scores.clone()
    position, attribution = x.clone(), torch.zeros_like(x)
    steps_taken = torch.zeros(n, dtype=torch.long, device=x.device)
    norms = g.flatten(1).norm(dim=1)  # (N,)
    moving = norms > 0
    for step in range(steps):
        which = moving.nonzero()[:, 0]  # (M,) images still moving
        if len(which) == 0:
            break
        here = position[which]  # (M, C, H, W)
        direction = g[which] / norms[which, None, None, None]
        there = (here - step_size * direction).clamp(0, 1)
        new_logits, new_g = target_gradient(there, which)
        attribution[which] += 0.5 * (g[which] + new_g) * (here - there)
        position[which], g[which] = there, new_g
        norms[which] = new_g.flatten(1).norm(dim=1)
        end_scores[which] = new_logits[torch.arange(len(which), device=x.device), target[which]]
        steps_taken[which] += 1
        moving[which] = (new_logits.argmax(1) == predicted[which]) & (norms[which] > 0)
        if progress is not None:
            progress(step + 1, steps)
        if partial is not None:
            partial(step + 1, attribution)
    if progress is not None and not (steps_taken == steps).any():
        progress(steps, steps)  # every image stopped early: the run is complete
    return FlowPath(attribution, position, steps_taken, start_scores, end_scores)


@register(
    "gradient_flow",
    label="Gradient flow (curved path)",
    family="nonlinear",
    signed=True,
    summary=(
        "Attribution along the path of steepest descent of the class logit, until the prediction "
        "changes: sums to the score drop, with no baseline image. Our nonlinear family, after Rosenzweig et al."
    ),
    reference=REFERENCE,
    params=(STEPS, STEP_SIZE),
    # The longest path; the benchmark's floor takes the steps an image's path really takes.
    plan=lambda s, k, hw: [Stage("gradient", 1, repeats=s["steps"] + 1)],
    shares_gradient=True,
    quick=lambda size: {"steps": 1},
)
def gradient_flow(ctx: Context, steps: int, step_size: float) -> tuple:
    """Curved-path attribution of `flow_path` (at most `steps` steps, default 32, of L2 length
    `step_size` pixel units, default 0.02, stopping where the predicted class changes); it sums to
    `s_c(x_0) − s_c(x_T)` up to the trapezoid rule's error. Map = signed channel sum. Cost: T
    forward and backward passes after the shared clean one. Our nonlinear family, after
    Rosenzweig et al. (arXiv:2110.06639)."""
    def partial(done: int, attribution: torch.Tensor) -> None:  # the path integral so far
        ctx.preview(lambda: attribution.sum(1), done, steps)

    path = flow_path(
        ctx.model, ctx.x, ctx.target, steps, step_size, start=(ctx.logits, ctx.gradient()), progress=ctx.progress,
        partial=partial if ctx.previewing else None,
    )
    return path.attribution, path.attribution.sum(1), True
