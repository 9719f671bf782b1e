"""Is the salient region sufficient? Reconstruction of salient inputs, docs/methods.md §4.

After Thakur & Fischmeister, "A generalizable saliency map-based interpretation of model
outcome" (arXiv:2006.09504, ICPR 2020), whose global view keeps the salient region of an image,
regenerates the rest, and counts how often the model still predicts the same class (they
regenerate with a GAN: 89 % for one image with half of the box kept). We have no offline GAN,
so the rest is refilled in ways that need none:

* ``blur``: a Gaussian-blurred copy (`fills.blur`, σ = 5 % of the shorter side);
* ``mean``: each image's mean colour;
* ``noise``: uniform noise in [0, 1], one refill per seed (`repeats` of them);
* ``inpaint``: classical harmonic inpainting (`harmonic_inpaint`): the refilled pixels solve
  Laplace's equation with the kept pixels as boundary values (conjugate gradients), the
  smoothest continuation of them;
* ``paste``: the kept region pasted onto each of the `others` images (other sample images,
  resized to this one by the caller).

Everything is in pixel units ([0, 1]). All refills of a call go through the model in one
batched `passes.forward_points` call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F

from engines.core import passes
from engines.core.explain import Target, as_module, check_images, resolve_target
from engines.core.checks import check_map
from engines.core.fills import blur, fill_image, occlusion_fill
from engines.families.occlusion import pixel_ranks

FILLS = ("blur", "mean", "noise", "inpaint", "paste")


@dataclass
class FillResult:
    """The refills of one kind: `images` `(R, N, C, H, W)` in pixel units on the CPU (R refills
    of each of N images), the class the model predicts for each, `predicted` `(R, N)`, and per
    image the fraction of its refills that kept the class, `fractions` `(N,)`."""

    fill: str
    images: torch.Tensor
    predicted: torch.Tensor
    fractions: torch.Tensor

    @property
    def fraction(self) -> float:
        """The fraction of all refills (every image) whose predicted class is the kept one."""
        return float(self.fractions.mean())


@dataclass
class SufficiencyReport:
    """The answer to "is the salient region sufficient?" for a batch.

    `keep` is the fraction of pixels kept; `kept` `(N, H, W)` bool marks them; `target` `(N,)`
    is the class each refill should keep (the clean prediction unless one was given) and
    `original` `(N,)` the clean prediction. `results` maps each fill to its `FillResult`;
    `skipped` maps fills that could not run to the reason (``paste`` without `others`).
    """

    keep: float
    kept: torch.Tensor
    target: torch.Tensor
    original: torch.Tensor
    results: dict[str, FillResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def fractions(self) -> dict[str, float]:
        """Per fill, the fraction of refilled images that kept the class."""
        return {name: result.fraction for name, result in self.results.items()}


def kept_pixels(saliency: torch.Tensor, keep: float) -> torch.Tensor:
    """The `⌈keep·H·W⌉` most salient pixels of each map `(N, H, W)`, as a bool mask `(N, H, W)`.

    Ties are broken by position (row-major order), so the choice is deterministic.
    """
    n, height, width = saliency.shape
    count = min(height * width, max(1, math.ceil(keep * height * width - 1e-9)))
    return (pixel_ranks(saliency.float()) < count).reshape(n, height, width)


def _neighbour_mean(image: torch.Tensor) -> torch.Tensor:
    """Mean of the four neighbours of every pixel `(N, C, H, W)`, edges replicated."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    return 0.25 * (padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:])


def harmonic_inpaint(x: torch.Tensor, known: torch.Tensor, tolerance: float = 1e-5, max_iterations: int = 0) -> torch.Tensor:
    """Harmonic (membrane) inpainting: unknown pixels solve Laplace's equation, the known ones
    fixed, so the fill is the smoothest continuation of the kept pixels (no OpenCV needed).

    `x` `(N, C, H, W)`, `known` `(N, 1, H, W)` (bool or 0/1). Every unknown pixel equals the mean
    of its four neighbours (image edges replicated: no flux across them); known pixels are
    returned unchanged. The linear system (symmetric, positive definite on the unknown pixels)
    is solved by conjugate gradients for every image and channel at once, from the known
    pixels' mean colour, until the residual is `tolerance` × the right-hand side's norm or after
    `max_iterations` (0: 4·(H + W), enough for any hole).
    """
    kept = known.to(x.dtype).expand_as(x)  # (N, C, H, W)
    free = 1 - kept
    fixed = x * kept

    def apply(z: torch.Tensor) -> torch.Tensor:  # (I − P) restricted to the unknown pixels
        return free * (z - _neighbour_mean(z))

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (N, C, 1, 1)
        return (a * b).sum(dim=(2, 3), keepdim=True)

    colour = fixed.sum(dim=(2, 3), keepdim=True) / kept.sum(dim=(2, 3), keepdim=True).clamp(min=1)
    z = free * colour  # (N, C, H, W): unknown values, zero on known pixels
    rhs = free * _neighbour_mean(fixed)
    goal = tolerance**2 * dot(rhs, rhs).clamp(min=1e-30)
    r = rhs - apply(z)
    p = r
    rs = dot(r, r)
    for i in range(max_iterations or 4 * sum(x.shape[-2:])):
        if i % 8 == 0 and bool((rs <= goal).all()):
            break
        ap = apply(p)
        curvature = dot(p, ap)
        alpha = torch.where(curvature > 0, rs / curvature.clamp(min=1e-30), torch.zeros_like(rs))
        z = z + alpha * p
        r = r - alpha * ap
        rs_next = dot(r, r)
        p = r + torch.where(rs > 0, rs_next / rs.clamp(min=1e-30), torch.zeros_like(rs)) * p
        rs = rs_next
    return fixed + free * z


def _check_settings(keep: Any, fills: Any, repeats: Any) -> tuple[str, ...]:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a number in (0, 1] (fraction of pixels kept); got {keep!r}")
    fills = (fills,) if isinstance(fills, str) else tuple(fills)
    unknown = [f for f in fills if f not in FILLS]
    if unknown or not fills:
        raise ValueError(f"fills must be one or more of {', '.join(FILLS)}; got {unknown or list(fills)!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer in [1, inf] (noise refills per image); got {repeats!r}")
    return tuple(dict.fromkeys(fills))


def _check_others(others: Any, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(others, torch.Tensor) or others.dim() != 4 or tuple(others.shape[1:]) != tuple(x.shape[1:]):
        shape = tuple(others.shape) if isinstance(others, torch.Tensor) else type(others).__name__
        raise ValueError(f"others must be images of shape (M, {', '.join(map(str, x.shape[1:]))}); got {shape}")
    return check_images(others)


def refills(
    x: torch.Tensor, kept: torch.Tensor, fill: str, repeats: int, others: Optional[torch.Tensor], seed: int
) -> torch.Tensor:
    """The refilled images of one kind, `(R, N, C, H, W)`: kept pixels from `x`, the rest from
    the fill. `kept` `(N, H, W)` bool."""
    keep = kept[:, None].to(x.dtype)  # (N, 1, H, W)
    if fill == "inpaint":
        return harmonic_inpaint(x, keep)[None]
    if fill == "paste":
        return keep[None] * x[None] + (1 - keep[None]) * others[:, None].to(x)  # (M, N, C, H, W)
    if fill == "noise":
        backgrounds = torch.stack([occlusion_fill(x, "noise", seed=seed + r) for r in range(repeats)])
    elif fill == "blur":
        backgrounds = blur(x)[None]
    else:
        backgrounds = fill_image(x, "mean")[None]
    return keep[None] * x[None] + (1 - keep[None]) * backgrounds  # (R, N, C, H, W)


def sufficiency(
    model: Any,
    x: torch.Tensor,
    saliency_map: torch.Tensor,
    keep: float = 0.5,
    fills: tuple[str, ...] = FILLS,
    repeats: int = 8,
    others: Optional[torch.Tensor] = None,
    target: Target = None,
    seed: int = 0,
    *,
    progress: passes.Progress = None,
) -> SufficiencyReport:
    """Keeps the most salient pixels of each image, refills the rest, and counts how often the
    model still predicts the same class (Thakur & Fischmeister 2020, "reconstruction of salient
    inputs").

    `x` `(N, C, H, W)` in pixel units; `saliency_map` `(N, H, W)` (or one `(H, W)` map for all)
    ranks the pixels, most salient first; `keep` in (0, 1] is the fraction of pixels kept
    (default 0.5; 1 keeps everything, so every refill is the image itself). `fills` are any of
    `FILLS`; `repeats` (default 8) noise refills per image, seeds `seed, seed + 1, …`; `others`
    `(M, C, H, W)` images the kept region is pasted onto (``paste`` is skipped without them).
    The class to keep is `target` (an int, one per image, or None: the clean prediction).
    One batched forward pass runs the clean images and every refill; ValueError names any bad
    argument. Images in the report are on the CPU.
    """
    fills = _check_settings(keep, fills, repeats)
    module = as_module(model)
    x = check_images(x)
    saliency = check_map(saliency_map, x)
    if others is not None:
        others = _check_others(others, x)
    device = passes.model_device(module)
    x = x.to(device)
    kept = kept_pixels(saliency.to(device), float(keep))  # (N, H, W)

    skipped: dict[str, str] = {}
    made: dict[str, torch.Tensor] = {}
    for fill in fills:
        if fill == "paste" and (others is None or len(others) == 0):
            skipped[fill] = "no other images were given to paste the region onto"
            continue
        made[fill] = refills(x, kept, fill, repeats, others, seed)
    batch = torch.cat([x[None], *made.values()])  # (1 + R, N, C, H, W): the clean images first

    logits = passes.forward_points(
        module, lambda start, stop: batch[start:stop], len(batch), tuple(x.shape), progress=progress
    )  # (1 + R, N, K)
    predicted = logits.argmax(dim=-1).cpu()  # (1 + R, N)
    original = predicted[0]
    wanted = original if target is None else resolve_target(target, logits[0]).cpu()

    report = SufficiencyReport(float(keep), kept.cpu(), wanted, original, skipped=skipped)
    start = 1
    for fill, images in made.items():
        classes = predicted[start : start + len(images)]  # (R, N)
        start += len(images)
        report.results[fill] = FillResult(fill, images.cpu(), classes, (classes == wanted).float().mean(dim=0))
    return report
