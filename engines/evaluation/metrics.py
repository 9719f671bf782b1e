"""Curves and checks that judge a saliency map, docs/methods.md §2, §5 and §6.

- `deletion_curve`, `insertion_curve` (RISE: Petsiuk, Das, Saenko, BMVC 2018): the target's
  probability as the most salient pixels are removed, or inserted into a blurred start.
- `allegiance_curve` (Llorente, Boal, Sánchez-Úbeda 2023, docs/methods.md §2): does the predicted
  class survive when the most salient pixels are set to black or white?
- `randomisation_check` (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018):
  cascading model-parameter randomisation, with Spearman rank correlation and SSIM per step.
- `pointing_game` (Zhang et al. 2016/2018; strict, or with their 15-pixel tolerance) and `relevance_mass` (Arras, Osman, Samek 2022) inside a
  known object mask.

Every model pass goes through `engines.passes`; the shared model is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from engines.core import passes
from engines.core.explain import Target, as_module, check_images, explain, resolve_target
from engines.core.fills import occlusion_fill
from engines.core.checks import check_map
from engines.families.occlusion import check_fill, check_step, count_for, pixel_ranks
from engines.core.registry import method_info

PAPER_FRACTIONS = (0.0, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The allegiance curve's fractions of pixels deleted, as in Llorente et al. 2023 (maximum AUC 0.9)."""

MAX_RANDOMISATION_STEPS = 10
"""Default number of steps of `randomisation_check` for deep models (see `randomisation_steps`)."""


@dataclass
class Curve:
    """A curve over fractions of pixels, one per image, all on the CPU.

    `fractions` `(P,)` fractions of pixels deleted (or inserted), ascending; `values` `(N, P)`;
    `auc` `(N,)` the trapezoid area under each curve over `fractions`; `kind` names the curve
    (e.g. "deletion", "insertion", "allegiance (black)"); `target` `(N,)` the class followed;
    `deleted` `(N, P)` the fraction of pixels actually changed at each point (less than the
    nominal fraction where zero-saliency pixels or ties were kept).
    """

    fractions: torch.Tensor
    values: torch.Tensor
    auc: torch.Tensor
    kind: str
    target: torch.Tensor
    deleted: torch.Tensor


def _trapezoid(values: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of `values` `(N, P)` over the (uneven) x `fractions` `(P,)`, `(N,)` float64."""
    return torch.trapezoid(values.double(), fractions.double(), dim=1)


def _check_steps(steps: Any, pixels: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= pixels:
        raise ValueError(f"steps must be an integer in [1, {pixels}] (the image's pixel count); got {steps!r}")
    return steps


def _check_fractions(fractions: Any) -> torch.Tensor:
    values = torch.as_tensor(fractions, dtype=torch.float64)
    if values.dim() != 1 or len(values) < 2 or not torch.isfinite(values).all():
        raise ValueError(f"fractions must be at least two numbers in [0, 1], ascending; got {fractions!r}")
    if (values < 0).any() or (values > 1).any() or (values[1:] < values[:-1]).any():
        raise ValueError(f"fractions must be at least two numbers in [0, 1], ascending; got {fractions!r}")
    return values


# --------------------------------------------------------------------------- deletion / insertion


def _probability_curve(
    model: Any,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: Target,
    steps: int,
    chosen_image: torch.Tensor,
    other_image: torch.Tensor,
    kind: str,
    progress: passes.Progress,
) -> Curve:
    """Shared by deletion and insertion: point i = 0 … `steps` shows `chosen_image` on the
    k_i = floor(i/steps · H·W) highest-ranked pixels of `saliency` and `other_image` elsewhere
    (deletion: the fill on chosen pixels, `x` elsewhere; insertion: `x` on chosen pixels, the
    start elsewhere). Values are the softmax probability of the target class."""
    module = as_module(model)
    n, _, h, w = x.shape
    ranks = pixel_ranks(saliency)  # (N, H·W), 0 = most salient
    counts = torch.tensor([i * h * w // steps for i in range(steps + 1)], device=x.device)  # (P,) exact floors

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        chosen = ranks[None] < counts[start:stop, None, None]  # (m, N, H·W)
        return torch.where(chosen.reshape(-1, n, 1, h, w), chosen_image[None], other_image[None])

    logits = passes.forward_points(module, points, steps + 1, tuple(x.shape), progress=progress).float().cpu()
    # The clean image is point 0 of deletion and the last point of insertion.
    chosen_target = resolve_target(target, logits[0] if kind == "deletion" else logits[-1]).cpu()
    probabilities = logits.softmax(dim=2).gather(2, chosen_target[None, :, None].expand(steps + 1, n, 1))[..., 0]
    fractions = counts.cpu().double() / (h * w)
    values = probabilities.T.contiguous()  # (N, P)
    return Curve(fractions, values, _trapezoid(values, fractions), kind, chosen_target,
                 fractions[None].expand(n, -1).clone())


def deletion_curve(
    model: Any,
    x: torch.Tensor,
    saliency_map: torch.Tensor,
    target: Target = None,
    steps: int = 50,
    fill: str = "black",
    *,
    step: float = 0.1,
    seed: int = 0,
    progress: passes.Progress = None,
) -> Curve:
    """RISE's deletion curve (Petsiuk et al. 2018): the softmax probability of the target class as
    the most salient pixels are replaced by `fill`, most salient first.

    Point i deletes the k_i = `floor(i/steps · H·W)` highest-ranked pixels (`pixel_ranks`: largest
    map value first, ties in raster order), i = 0 … `steps`; the curve's fractions are the exact
    k_i / (H·W), so they run 0 … 1 and the last
    point is the fill image: as in RISE every pixel is ranked, zeros included, so every map's
    curve has the same ends and AUCs compare. Lower AUC (trapezoid over the fractions) means a
    more faithful map. `target=None` follows the clean image's predicted class. One batched
    pass over `steps + 1` copies, built chunk by chunk. `step` (pixel units) and `seed` serve
    the darker/brighter and noise fills.
    """
    x = check_images(x).to(passes.model_device(as_module(model)))
    saliency = check_map(saliency_map, x)
    steps = _check_steps(steps, x.shape[2] * x.shape[3])
    replacement = occlusion_fill(x, check_fill(fill), check_step(step), seed)
    return _probability_curve(model, x, saliency, target, steps, replacement, x, "deletion", progress)


def insertion_curve(
    model: Any,
    x: torch.Tensor,
    saliency_map: torch.Tensor,
    target: Target = None,
    steps: int = 50,
    start: str = "blur",
    *,
    step: float = 0.1,
    seed: int = 0,
    progress: passes.Progress = None,
) -> Curve:
    """RISE's insertion curve (Petsiuk et al. 2018): start from `start` (a blurred copy by
    default, as in RISE; "black" is the empty start) and put back the pixels of `x`, most salient
    first; the softmax probability of the target class at each point.

    Point i inserts the `floor(i/steps · H·W)` highest-ranked pixels (ties in raster order); the
    last point is `x` itself. Higher AUC means a more faithful map. `target=None` follows the
    clean image's predicted class. One batched pass over `steps + 1` copies.
    """
    x = check_images(x).to(passes.model_device(as_module(model)))
    saliency = check_map(saliency_map, x)
    steps = _check_steps(steps, x.shape[2] * x.shape[3])
    start_image = occlusion_fill(x, check_fill(start, "start"), check_step(step), seed)
    return _probability_curve(model, x, saliency, target, steps, x, start_image, "insertion", progress)


# --------------------------------------------------------------------------- allegiance


def strictly_above(saliency: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Masks `(P, N, H·W)` of the pixels deleted at each fraction by the protocol of Llorente et
    al. (docs/methods.md §2): with k = floor(p · H·W), the threshold is the (k+1)-th largest value of
    the map, and a pixel is deleted when its value is strictly above it and non-zero.

    Without ties that is exactly the k most salient pixels. Tie rule: pixels tied AT the
    threshold are all kept (none of a tied group straddling the cut is deleted), so fewer than
    k may be deleted, never more; zero-saliency pixels are never deleted. At k = H·W every
    non-zero pixel is deleted; at k = 0 none.
    """
    flat = saliency.flatten(1)  # (N, H·W)
    pixels = flat.shape[1]
    ordered = flat.sort(dim=1, descending=True).values  # (N, H·W)
    counts = [count_for(float(p), pixels) for p in fractions]
    lowest = torch.full_like(ordered[:, :1], -torch.inf)
    thresholds = torch.stack([ordered[:, k : k + 1] if k < pixels else lowest for k in counts])  # (P, N, 1)
    return (flat[None] > thresholds) & (flat[None] != 0)


def allegiance_curve(
    model: Any,
    x: torch.Tensor,
    saliency_map: torch.Tensor,
    fill: str = "black",
    fractions: Sequence[float] = PAPER_FRACTIONS,
    target: Target = None,
    *,
    step: float = 0.1,
    seed: int = 0,
    progress: passes.Progress = None,
) -> Curve:
    """The allegiance curve of Llorente et al. 2023 (docs/methods.md §2), by their protocol.

    The map is computed once, on the clean image (the caller passes it). For each fraction p
    the pixels `strictly_above` the threshold of the floor(p · H·W) most salient are set, whole
    pixels (all channels), to `fill`: black (0) or white (1) in the paper; any occlusion fill
    is accepted (darker / brighter by `step` is the paper's future work). Value = 1 where the
    argmax of the occluded image still equals the ORIGINAL argmax (or `target`, when given),
    else 0. AUC = trapezoid over the uneven `fractions` (maximum 0.9 on the paper's grid);
    lower is better. The clean image rides in the same batched pass to give the original argmax.
    """
    module = as_module(model)
    x = check_images(x).to(passes.model_device(module))
    saliency = check_map(saliency_map, x)
    grid = _check_fractions(fractions)
    replacement = occlusion_fill(x, check_fill(fill), check_step(step), seed)
    n, _, h, w = x.shape
    deleted = strictly_above(saliency, grid)  # (P, N, H·W)
    deleted = torch.cat([torch.zeros_like(deleted[:1]), deleted])  # point 0: the clean image

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        chosen = deleted[start:stop].reshape(-1, n, 1, h, w)
        return torch.where(chosen, replacement[None], x[None])

    logits = passes.forward_points(module, points, len(deleted), tuple(x.shape), progress=progress).float().cpu()
    original = resolve_target(target, logits[0]).cpu()
    kept = (logits[1:].argmax(dim=2) == original[None]).float().T.contiguous()  # (N, P)
    fraction_deleted = deleted[1:].double().mean(dim=2).T.contiguous().cpu()  # (N, P)
    return Curve(grid, kept, _trapezoid(kept, grid), f"allegiance ({fill})", original, fraction_deleted)


# --------------------------------------------------------------------------- localisation


def _check_mask(mask: Any, saliency: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor of shape (N, H, W) or (H, W); got {type(mask).__name__}")
    mask = mask.to(saliency.device)
    if mask.dim() == 2:
        mask = mask[None]
    if mask.shape[1:] != saliency.shape[1:] or mask.shape[0] not in (1, saliency.shape[0]):
        raise ValueError(f"mask must have shape {tuple(saliency.shape)} or {tuple(saliency.shape[1:])}; "
                         f"got {tuple(mask.shape)}")
    mask = (mask != 0).expand_as(saliency)
    if not mask.flatten(1).any(dim=1).all():
        raise ValueError("mask must mark at least one pixel of every image")
    return mask


POINTING_TOLERANCE = 15
"""Zhang et al.'s pointing-game tolerance: 15 pixels at 224² (`pointing_tolerance` scales it)."""


def pointing_tolerance(size: tuple[int, int]) -> int:
    """Zhang et al.'s 15-pixel tolerance at 224², scaled with the image's shorter side and
    rounded: 15 at 224², 4 at 64², 0 below 8 pixels."""
    return int(round(POINTING_TOLERANCE * min(size) / 224))


def pointing_game(saliency_map: torch.Tensor, mask: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016
    and IJCV 2018): `(N,)` bool, True where a pixel holding the map's largest value lies inside
    the object mask, or within `tolerance` pixels of it (Euclidean distance between pixel
    centres; Zhang et al. use 15 at 224², `pointing_tolerance(size)` scales it; the default 0
    is the strict test). Ties for the maximum: a hit if any of them is inside. A constant map
    points nowhere: a miss. The value, not the magnitude, is maximised: pass `map.abs()` for
    magnitudes.
    """
    saliency = check_map(saliency_map, dtype=torch.float64)
    inside = _check_mask(mask, saliency)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an integer >= 0 (pixels); got {tolerance!r}")
    if tolerance:
        offsets = torch.arange(-tolerance, tolerance + 1, dtype=torch.float64)
        disc = (offsets[:, None] ** 2 + offsets[None] ** 2 <= tolerance**2).double()  # (2t+1, 2t+1)
        reach = nn.functional.conv2d(inside[:, None].double(), disc[None, None].to(inside.device), padding=tolerance)
        inside = reach[:, 0] > 0.5  # some mask pixel lies within the disc
    flat = saliency.flatten(1)
    peak = flat == flat.amax(dim=1, keepdim=True)  # (N, H·W)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    return (peak & inside.flatten(1)).any(dim=1) & ~constant


def relevance_mass(saliency_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Relevance mass accuracy (Arras, Osman, Samek, "CLEVR-XAI", 2022): the fraction of the
    map's positive saliency that lies inside the object mask, `(N,)` float in [0, 1]:
    `Σ_inside max(map, 0) / Σ_all max(map, 0)`. NaN for a map with no positive saliency.
    """
    saliency = check_map(saliency_map, dtype=torch.float64)
    inside = _check_mask(mask, saliency)
    positive = saliency.clamp(min=0).flatten(1)
    total = positive.sum(dim=1)
    within = (positive * inside.flatten(1)).sum(dim=1)
    return torch.where(total > 0, within / total, torch.nan).float()


# --------------------------------------------------------------------------- similarity of maps


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1 … M of a 1-D tensor, ties given their average rank (scipy's "average"), float64."""
    ordered, order = values.sort(stable=True)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # (G,)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps `(N, H, W)`, `(N,)` float64: the Pearson
    correlation of their ranks, ties given average ranks (as scipy.stats.spearmanr). NaN where
    either map is constant (its ranks have no spread)."""
    out = []
    for u, v in zip(a.flatten(1).double(), b.flatten(1).double()):  # one image at a time
        ru, rv = _average_ranks(u), _average_ranks(v)
        ru, rv = ru - ru.mean(), rv - rv.mean()
        scale = (ru.square().sum() * rv.square().sum()).sqrt()
        out.append(((ru * rv).sum() / scale) if scale > 0 else torch.tensor(torch.nan, dtype=torch.float64))
    return torch.stack(out)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang, Bovik, Sheikh, Simoncelli 2004) of each pair of maps
    `(N, H, W)`, `(N,)` float64: local means, variances and covariance under a Gaussian window
    (σ = 1.5 pixels, radius 5, i.e. 11×11), C1 = (0.01·L)², C2 = (0.03·L)² with L = `data_range`,
    averaged over the pixels whose window lies inside the map. This is scikit-image's
    `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`.
    Maps smaller than 11 pixels use the largest window that fits (same σ, truncated).
    """
    radius = min(int(3.5 * sigma + 0.5), (min(a.shape[-2:]) - 1) // 2)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=a.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()

    def local_mean(t: torch.Tensor) -> torch.Tensor:  # (N, 1, H, W) -> (N, 1, H − 2r, W − 2r)
        t = nn.functional.conv2d(t, kernel.reshape(1, 1, -1, 1))
        return nn.functional.conv2d(t, kernel.reshape(1, 1, 1, -1))

    u, v = a[:, None].double(), b[:, None].double().to(a.device)  # (N, 1, H, W)
    mu_u, mu_v = local_mean(u), local_mean(v)
    var_u = local_mean(u * u) - mu_u**2
    var_v = local_mean(v * v) - mu_v**2
    cov = local_mean(u * v) - mu_u * mu_v
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_u * mu_v + c1) * (2 * cov + c2)) / ((mu_u**2 + mu_v**2 + c1) * (var_u + var_v + c2))
    return index.mean(dim=(1, 2, 3))


def normalised_magnitude(saliency: torch.Tensor) -> torch.Tensor:
    """`|map| / max |map|` per image, in [0, 1] (an all-zero map stays zero), float64."""
    magnitude = saliency.double().abs()
    peak = magnitude.flatten(1).amax(dim=1).clamp(min=torch.finfo(torch.float64).tiny)
    return magnitude / peak[:, None, None]


# --------------------------------------------------------------------------- randomisation


@dataclass
class RandomisationStep:
    """One step of the cascading randomisation: everything above and including `layers` has been
    re-initialised. `layers` are the block names re-initialised at this step, `modules` every
    module reset at this step. Similarities `(N,)` are to the original model's map, both maps
    made `|map| / max |map|`: `spearman` (rank correlation of magnitudes), `spearman_signed`
    (of the raw signed values; equals `spearman` for maps that are never negative), `ssim`.
    `map` `(N, H, W)` is the randomised model's map, on the CPU. A correlation is NaN where a map
    is constant (e.g. a gradient that vanished)."""

    layers: tuple[str, ...]
    modules: tuple[str, ...]
    spearman: torch.Tensor
    spearman_signed: torch.Tensor
    ssim: torch.Tensor
    map: torch.Tensor


def parameterised_modules(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters or buffers and can `reset_parameters()`, from the
    top (output) down: the reverse of registration order, which for a network that registers its
    layers in the order it runs them is from the output to the input (as Quantus's MPRT)."""
    names = [
        name for name, module in model.named_modules()
        if hasattr(module, "reset_parameters")
        and (any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)))
    ]
    return names[::-1]


def _prefix(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth])


Step = tuple[tuple[str, ...], tuple[str, ...]]
"""One step of the cascade: (block names, names of the modules it re-initialises)."""


def randomisation_steps(model: nn.Module, layers: Union[None, int, Sequence[str]] = None) -> list[Step]:
    """The steps of the cascade, each `(block names, module names)`, from the output down.

    `layers`:
    - None or an int m (default `MAX_RANDOMISATION_STEPS`): one step per parameterised module if
      there are at most m; otherwise modules are grouped into blocks by their name's prefix at the
      shallowest depth giving at least m blocks (EfficientNet: its 16 MBConv blocks, stem, head
      and classifier), the top block (the classifier) is its own first step, and the other
      blocks are merged, in order, into m − 1 steps of near-equal numbers of blocks.
    - a sequence of module names: one step per name, re-initialising every parameterised module
      at or under it not already reset by an earlier step.
    """
    names = parameterised_modules(model)
    if not names:
        raise ValueError(
            "the model has no layers that can reset_parameters() to randomise (a TorchScript model keeps "
            "no Python methods: load it as a Python nn.Module to run this check)"
        )
    if layers is None or (isinstance(layers, int) and not isinstance(layers, bool)):
        most = MAX_RANDOMISATION_STEPS if layers is None else layers
        if most < 1:
            raise ValueError(f"layers must be None, an integer >= 1 (steps), or module names; got {layers!r}")
        return _grouped_steps(names, most)
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be None, an integer >= 1 (steps), or a list of module names; got {layers!r}")
    steps, done = [], set()
    for block in layers:
        members = [n for n in names if (n == block or n.startswith(block + ".")) and n not in done]
        if not members:
            tops = sorted({_prefix(n, 2) for n in names})
            raise ValueError(f"layers: {block!r} names no parameterised module not already reset; "
                             f"module names start with e.g. {', '.join(tops[:8])}")
        done.update(members)
        steps.append(((block,), tuple(members)))
    return steps


def _grouped_steps(names: list[str], most: int) -> list[Step]:
    if len(names) <= most:
        return [((n,), (n,)) for n in names]
    depth = 1
    while True:
        keys = [_prefix(n, depth) for n in names]
        blocks: list[tuple[str, list[str]]] = []
        for key, name in zip(keys, names):
            if blocks and blocks[-1][0] == key:
                blocks[-1][1].append(name)
            else:
                blocks.append((key, [name]))
        if len(blocks) >= most or all(key == name for key, name in zip(keys, names)):
            break
        depth += 1
    groups = [blocks[:1]]
    rest = blocks[1:]
    parts = max(1, most - 1)
    size, extra = divmod(len(rest), parts)
    start = 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        if stop > start:
            groups.append(rest[start:stop])
        start = stop
    return [(tuple(k for k, _ in g), tuple(n for _, members in g for n in members)) for g in groups]


def _reinitialise(model: nn.Module, modules: Sequence[str], position: dict[str, int], seed: int) -> None:
    """`reset_parameters()` on each named module of `model` (a private copy), each seeded with
    `seed + its position in the top-down order`, so a module's new weights depend on the seed and
    on which module it is, not on how steps were grouped. The global RNG state is restored."""
    by_name = dict(model.named_modules())
    with torch.random.fork_rng():
        for name in modules:
            torch.manual_seed(seed + position[name])
            by_name[name].reset_parameters()
    for p in model.parameters():
        p.requires_grad_(False)


def randomisation_check(
    model: Any,
    x: torch.Tensor,
    method: str,
    target: Target = None,
    layers: Union[None, int, Sequence[str]] = None,
    seed: int = 0,
    *,
    progress: passes.Progress = None,
    **method_settings: Any,
) -> list[RandomisationStep]:
    """Cascading model-parameter randomisation (Adebayo et al., "Sanity checks for saliency maps",
    NeurIPS 2018): a map that barely changes when the weights are randomised does not depend on
    what the model learned.

    Works on a deep copy of the model, frozen (the shared model is never touched). Layers are
    re-initialised from the output down, cumulatively, one step per layer or per group of blocks
    (`randomisation_steps`, at most 10 steps by default), with each module's `reset_parameters()`
    under `seed` (global RNG state untouched). After each step the map of `method` (with
    `method_settings`) is recomputed with `explain` for the ORIGINAL target (the clean model's
    predicted class unless `target` is given), and compared with the original map: Spearman rank
    correlation of |map| (the usual unsigned comparison), of the signed values, and SSIM of
    `|map| / max |map|`. `progress(done, total)` is called after each step.
    """
    module = as_module(model)
    info = method_info(method)
    info.settings(method_settings)  # refuse bad settings before any pass
    steps = randomisation_steps(module, layers)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    original = explain(module, x, method, target, **method_settings)
    reference = original.map
    position = {name: i for i, name in enumerate(parameterised_modules(module))}
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    results = []
    for done, (blocks, members) in enumerate(steps, start=1):
        _reinitialise(twin, members, position, seed)
        randomised = explain(twin, x, method, original.target, **method_settings).map
        results.append(RandomisationStep(
            layers=blocks,
            modules=members,
            spearman=spearman(reference.abs(), randomised.abs()).float(),
            spearman_signed=spearman(reference, randomised).float(),
            ssim=ssim(normalised_magnitude(reference), normalised_magnitude(randomised)).float(),
            map=randomised,
        ))
        if progress is not None:
            progress(done, len(steps))
    return results
