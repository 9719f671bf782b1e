"""Occlusion, docs/methods.md §5: what the model says when part of the image is hidden.

- `occlusion` (registered method): the sliding-window sensitivity map of Zeiler & Fergus,
  "Visualizing and understanding convolutional networks" (ECCV 2014).
- `occlude`: the live slider: hide the most salient fraction of pixels of a given map, one
  forward pass. `occlude_box`: hide a drawn box.
- `pixel_ranks` / `count_for`: the ranking of pixels by a map that the occlusion slider and the
  deletion / insertion curves of `engines.metrics` share.

Fills are those of `engines.core.fills.OCCLUSION_FILLS`, in pixel units: black is 0, white is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from engines.core import lane, passes, refine
from engines.core.checks import check_map
from engines.core.explain import Context, Target, as_module, check_images, resolve_target
from engines.core.fills import OCCLUSION_FILLS, fill_image, occlusion_fill
from engines.core.registry import Param, Peer, Stage, register

"""The image side (pixels) that cost estimates assume: the catalogue's ImageNet input size."""

REFERENCE = "Zeiler & Fergus, Visualizing and understanding convolutional networks, ECCV 2014"


# --------------------------------------------------------------------------- checks


def check_fill(fill: Any, name: str = "fill") -> str:
    """`fill` if it is one of `OCCLUSION_FILLS`; ValueError naming `name` and listing them otherwise."""
    if not isinstance(fill, str) or fill not in OCCLUSION_FILLS:
        raise ValueError(f"{name} must be one of {', '.join(OCCLUSION_FILLS)}; got {fill!r}")
    return fill


def check_fraction(fraction: Any, name: str = "fraction") -> float:
    """`fraction` as a float in [0, 1] (fraction of pixels); ValueError naming `name` otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"{name} must be a number in [0, 1] (fraction of pixels); got {fraction!r}")
    return float(fraction)


def check_step(step: Any) -> float:
    """The darker/brighter step, a number in [0, 1] (pixel units); ValueError otherwise."""
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 <= step <= 1:
        raise ValueError(f"step must be a number in [0, 1] (pixel units); got {step!r}")
    return float(step)


# --------------------------------------------------------------------------- ranking pixels


def count_for(fraction: float, pixels: int) -> int:
    """`floor(fraction · pixels)`, computed so that float rounding of the fraction cannot lose a
    pixel (0.29 · 100 is 28.999… in floating point; this gives 29)."""
    return min(pixels, math.floor(round(fraction * pixels, 9)))


def pixel_ranks(saliency: torch.Tensor) -> torch.Tensor:
    """The rank of every pixel by its map value, largest first: `(N, H·W)` long, 0 = most salient.

    Ties are broken by raster order (row by row, left to right: the earlier pixel ranks first), by
    a stable sort, so the ranking is deterministic on every device.
    """
    flat = saliency.flatten(1)  # (N, H·W)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order).contiguous())
    return ranks


def top_pixels(saliency: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask `(N, H, W)` of the `floor(fraction · H·W)` highest-ranked pixels of each map
    (`pixel_ranks`: largest value first, ties in raster order), leaving out every pixel whose
    value is exactly 0: a zero-saliency pixel is never chosen, so fewer may be chosen.

    The ranking is by the map's value, not its magnitude: for a signed map, the negative pixels
    come after the zeros (pass `map.abs()` to rank by magnitude).
    """
    n, h, w = saliency.shape
    count = count_for(fraction, h * w)
    chosen = pixel_ranks(saliency) < count  # (N, H·W)
    return chosen.reshape(n, h, w) & (saliency != 0)


# --------------------------------------------------------------------------- sliding windows


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """First pixels of the windows along one axis: 0, stride, 2·stride, …, plus `size − window`
    when the stride does not land there, so the last window touches the image's edge."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _axis_cover(starts: list[int], window: int, size: int, device: torch.device) -> torch.Tensor:
    """`(S, size)` bool: row s is True on the pixels that window s covers along this axis."""
    begin = torch.tensor(starts, device=device)[:, None]  # (S, 1)
    pixel = torch.arange(size, device=device)[None]  # (1, size)
    return (pixel >= begin) & (pixel < begin + window)


def _occlusion_plan(settings: dict, num_classes: int, hw: tuple[int, int]) -> list[Stage]:
    """The clean pass and one forward pass per window position (one window when it exceeds the image)."""
    window, stride = settings["window"], settings["stride"]
    windows = 1 if window > min(hw) else len(window_starts(hw[0], window, stride)) * len(window_starts(hw[1], window, stride))
    return [Stage("forward", 1 + windows)]


def _captum_occlusion(model, x, target, settings, knob):
    from captum.attr import Occlusion

    window, stride = settings["window"], settings["stride"]
    baseline = fill_image(x, settings["fill"])
    return lambda: Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride),
        baselines=baseline, target=target, perturbations_per_eval=knob,
    )


def _captum_comparable(settings: dict, size: tuple[int, int]) -> bool:
    """Captum's Occlusion has no noise or darker/brighter fills, refuses strides longer than the
    window, and its last window stops short of the edge unless the strides fit exactly (ours
    always reaches the edge)."""
    window, stride = settings["window"], settings["stride"]
    fits = stride <= window and all(side >= window and (side - window) % stride == 0 for side in size)
    return fits and settings["fill"] in ("black", "white", "grey", "mean", "blur")


@register(
    "occlusion",
    label="Occlusion",
    family="occlusion",
    signed=True,
    summary="How much the class score drops when a sliding window hides each part of the image.",
    reference=REFERENCE,
    params=(
        Param("window", 32, "int", "Side of the square window that hides part of the image.", low=1, high=4096,
              unit="pixels"),
        Param("stride", 16, "int", "Step between window positions; the last window always touches the edge.",
              low=1, high=4096, unit="pixels"),
        Param("fill", "grey", "choice", "What the hidden pixels become (Zeiler & Fergus used a grey square).",
              choices=OCCLUSION_FILLS),
        Param("step", 0.1, "float", "Brightness change of the darker / brighter fills.", low=0.0, high=1.0,
              unit="pixel units"),
        Param("seed", 0, "int", "Seed of the noise fills.", low=0, high=2**31 - 1),
    ),
    plan=_occlusion_plan,
    quick=lambda size: {"window": max(1, min(size) // 2), "stride": max(1, min(size) // 2)},
    peers=(Peer("captum", "Captum Occlusion", _captum_occlusion, lambda a, s: a[:, 0],  # the same drop on every channel
                knob="perturbations_per_eval", default=1, candidates=lambda s: [2**i for i in range(8)],
                comparable=_captum_comparable),),
)
def occlusion(ctx: Context, window: int, stride: int, fill: str, step: float, seed: int) -> tuple:
    """Zeiler & Fergus 2014: slide a `window`×`window` square with `stride` (pixels) over the
    image, replace what it covers by `fill`, and record the drop `s_c(x) − s_c(x with the window
    filled)` of the target logit. Map = the mean drop over the windows covering each pixel
    (0 where no window covers it, i.e. when stride > window). Signed: hiding a part can raise
    the score. A window covering the whole image gives exactly `s_c(x) − s_c(fill)`.

    The default fill is Zeiler & Fergus's grey square (0.5 in pixel units, close to the ImageNet
    mean, so near 0 after normalisation): it is the same for every image, so maps of different
    images are measured against the same reference, which an image's own mean colour is not.
    Cost: one forward pass per window, batched; windows are built chunk by chunk.
    """
    x = ctx.x
    n, _, h, w = x.shape
    if window > min(h, w):
        raise ValueError(f"window must be at most the image's shorter side ({min(h, w)} pixels); got {window}")
    rows = _axis_cover(window_starts(h, window, stride), window, h, x.device)  # (I, H)
    cols = _axis_cover(window_starts(w, window, stride), window, w, x.device)  # (J, W)
    replacement = occlusion_fill(x, fill, step, seed)
    count = len(rows) * len(cols)
    order = refine.coarse_to_fine(len(rows), len(cols)).to(x.device)  # windows, coarse to fine

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        index = order[start:stop]
        inside = rows[index // len(cols)][:, :, None] & cols[index % len(cols)][:, None, :]  # (m, H, W)
        return torch.where(inside[:, None, None], replacement[None], x[None])

    target = ctx.target.to(x.device)
    clean = ctx.logits.gather(1, target[:, None])[:, 0]  # (N,)

    def drops(logits: torch.Tensor) -> torch.Tensor:  # (m, N, K) of the first m windows → (N, m)
        scores = logits.gather(2, target.to(logits.device)[None, :, None].expand(len(logits), n, 1))[..., 0]
        return (clean.to(scores)[None] - scores).double().T

    def drop_map(drop: torch.Tensor) -> torch.Tensor:  # (N, I·J) in window order → (N, H, W)
        rows_f, cols_f = rows.double(), cols.double()
        total = torch.einsum("nij,ih,jw->nhw", drop.reshape(n, len(rows), len(cols)), rows_f, cols_f)
        covered = torch.einsum("ih,jw->hw", rows_f, cols_f)  # (H, W) windows per pixel
        return (total / covered.clamp(min=1)).float()

    def partial(done: int, logits: torch.Tensor) -> None:  # preview: uncomputed windows from their neighbours
        if done < min(count, 4):
            return

        def make() -> torch.Tensor:
            drop = torch.zeros(n, count, dtype=torch.float64, device=x.device)
            drop[:, order[:done]] = drops(logits).to(drop.device)
            computed = torch.zeros(count, dtype=torch.bool)
            computed[order[:done].cpu()] = True
            return drop_map(refine.filled(drop, computed, len(rows), len(cols)))

        ctx.preview(make, done, count)

    logits = passes.forward_points(ctx.model, points, count, tuple(x.shape), progress=ctx.progress,
                                   partial=partial if ctx.previewing else None)  # (I·J, N, K), in `order`
    drop = torch.empty(n, count, dtype=torch.float64, device=x.device)
    drop[:, order] = drops(logits).to(drop.device)  # (N, I·J) in window order
    return None, drop_map(drop), True


# --------------------------------------------------------------------------- live occlusion


@dataclass
class Occluded:
    """The result of one live occlusion, all on the CPU.

    `image` `(N, C, H, W)` the occluded images in pixel units; `logits` and softmax
    `probabilities` `(N, K)` of the occluded images; `mask` `(N, H, W)` bool, True on the pixels
    that were filled; `target` `(N,)` the class to read the probability of (the clean image's
    predicted class unless one was given).
    """

    image: torch.Tensor
    logits: torch.Tensor
    probabilities: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor

    @property
    def fraction_deleted(self) -> torch.Tensor:
        """Fraction of each image's pixels that were filled, `(N,)`."""
        return self.mask.flatten(1).float().mean(1)


def occlude(
    model: Any,
    x: torch.Tensor,
    saliency_map: torch.Tensor,
    fraction: float,
    fill: str = "black",
    target: Target = None,
    step: float = 0.1,
    seed: int = 0,
) -> Occluded:
    """Hides the `fraction` most salient pixels of each image and runs the model once.

    Pixels are ranked by `saliency_map` `(N, H, W)` (its value, largest first; ties in raster
    order, see `pixel_ranks`); the first `floor(fraction · H·W)` are filled with `fill` (whole
    pixels, all channels), except that pixels whose saliency is exactly 0 are never filled, so
    fewer may be. `fraction` is a fraction of pixels in [0, 1]; `step` (pixel units) is the
    darker/brighter change and `seed` the noise seed. The map is not recomputed. One forward
    pass (`passes.forward`); with `target=None` the clean images ride in the same pass, to find
    their predicted class. `model` is an `nn.Module` or a `LoadedModel`.
    """
    x = check_images(x)
    saliency = check_map(saliency_map, x)
    fraction = check_fraction(fraction)
    mask = top_pixels(saliency, fraction)
    return _occlude_mask(model, x, mask, fill, target, step, seed)


def occlude_box(
    model: Any,
    x: torch.Tensor,
    box: tuple[int, int, int, int],
    fill: str = "black",
    target: Target = None,
    step: float = 0.1,
    seed: int = 0,
) -> Occluded:
    """Fills the box `(row0, row1, col0, col1)` (pixels, half-open: rows row0 … row1 − 1) of every
    image with `fill` and runs the model once: the dashboard's clicked or dragged region."""
    x = check_images(x)
    _, _, h, w = x.shape
    if len(box) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in box):
        raise ValueError(f"box must be four integers (row0, row1, col0, col1); got {box!r}")
    row0, row1, col0, col1 = box
    if not (0 <= row0 < row1 <= h and 0 <= col0 < col1 <= w):
        raise ValueError(
            f"box must satisfy 0 <= row0 < row1 <= {h} and 0 <= col0 < col1 <= {w} (pixels); got {tuple(box)}"
        )
    mask = torch.zeros((len(x), h, w), dtype=torch.bool)
    mask[:, row0:row1, col0:col1] = True
    return _occlude_mask(model, x, mask, fill, target, step, seed)


def _occlude_mask(
    model: Any, x: torch.Tensor, mask: torch.Tensor, fill: str, target: Target, step: float, seed: int
) -> Occluded:
    """Fills `mask` `(N, H, W)` of `x` and returns the model's answer, from one forward pass."""
    module = as_module(model)
    check_fill(fill)
    step = check_step(step)
    x = x.to(passes.model_device(module))
    mask = mask.to(x.device)
    image = torch.where(mask[:, None], occlusion_fill(x, fill, step, seed), x)  # (N, C, H, W)
    batch = image if target is not None else torch.cat([image, x])  # clean images last, to find the class
    with lane.urgent():  # the live slider: ahead of the next chunk of any long map
        logits = passes.forward(module, batch).float().cpu()
    n = len(x)
    chosen = resolve_target(target, logits[:n] if target is not None else logits[n:])
    logits = logits[:n]
    return Occluded(image.cpu(), logits, logits.softmax(dim=1), mask.cpu(), chosen.cpu())
