"""The image sets the faithfulness measurements score maps on.

- `shapes_set(count)`: the shapes test set (`engines.models.shapes.make_dataset` with its test
  seed), images `(n, 3, 64, 64)` with their object masks, for the shapes CNN.
- `photo_views(loaded, views)`: every photo shipped in `assets/samples` (the shapes samples
  left out), as the model sees it and as crops, rescalings and horizontal flips of it: more
  images than five photos, without leaving the photos we may ship.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torchvision.transforms.v2 import functional as TF

from engines.data.images import read_image, sample_images
from engines.models import shapes


@dataclass
class ImageSet:
    """Images `(n, 3, S, S)` in pixel units with their names, and object masks `(n, S, S)` or None."""

    name: str
    images: torch.Tensor
    names: list[str]
    masks: Optional[torch.Tensor] = None


def shapes_set(count: int, seed: int = shapes.TEST_SEED) -> ImageSet:
    """The first `count` images of the shapes test set, with their object masks."""
    images, _, masks = shapes.make_dataset(count, seed)
    return ImageSet("shapes", images, [f"shapes test {i}" for i in range(count)], masks)


def _crop(fraction: float, where: str):
    """A crop of `fraction` of each side at `where` (two of top/bottom/centre, left/right/centre)."""

    def view(image: torch.Tensor) -> torch.Tensor:
        _, h, w = image.shape
        ch, cw = int(h * fraction), int(w * fraction)
        vertical, horizontal = where.split()
        top = {"top": 0, "bottom": h - ch, "centre": (h - ch) // 2}[vertical]
        left = {"left": 0, "right": w - cw, "centre": (w - cw) // 2}[horizontal]
        return image[:, top : top + ch, left : left + cw]

    return view


def _rescale(factor: float):
    """Resized by `factor`; a smaller image is padded back to its size by reflection."""

    def view(image: torch.Tensor) -> torch.Tensor:
        _, h, w = image.shape
        resized = TF.resize(image, [int(h * factor), int(w * factor)], antialias=True)
        if factor >= 1:
            return resized
        pad_h, pad_w = h - resized.shape[1], w - resized.shape[2]
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        return torch.nn.functional.pad(resized[None], padding, mode="reflect")[0]

    return view


VIEWS = {
    "as is": lambda image: image,
    "flipped": lambda image: image.flip(-1),
    "crop 80 % top left": _crop(0.8, "top left"),
    "crop 80 % bottom right": _crop(0.8, "bottom right"),
    "rescaled 1.25×": _rescale(1.25),
    "crop 70 % centre": _crop(0.7, "centre centre"),
    "flipped crop 80 % top right": lambda image: _crop(0.8, "top right")(image).flip(-1),
    "rescaled 0.8×, reflected border": _rescale(0.8),
}
"""The views of a photo `(3, H, W)` before the model's resize and centre crop, in the order they are
taken (`photo_views(…, views=k)` takes the first k)."""


def photo_views(loaded, views: int = len(VIEWS), photos: Optional[list[str]] = None) -> ImageSet:
    """The shipped photos (`sample_images()` without the shapes samples, or the named ones), each
    as its first `views` views (`VIEWS`), preprocessed as the model expects (`loaded.preprocess`)."""
    if not 1 <= views <= len(VIEWS):
        raise ValueError(f"views must be an integer in [1, {len(VIEWS)}]; got {views}")
    chosen = {name: path for name, path in sample_images().items() if not name.startswith("shapes")}
    if photos:
        unknown = sorted(set(photos) - set(chosen))
        if unknown:
            raise ValueError(f"no shipped photo {', '.join(unknown)}; the photos are: {', '.join(chosen)}")
        chosen = {name: chosen[name] for name in photos}
    images, names = [], []
    for name, path in chosen.items():
        photo = TF.to_dtype(TF.to_image(read_image(path)), torch.float32, scale=True)  # (3, H, W)
        for kind in list(VIEWS)[:views]:
            view = TF.to_pil_image(VIEWS[kind](photo).clamp(0, 1))
            images.append(loaded.preprocess(view)[0])
            names.append(f"{name} ({kind})")
    return ImageSet("photos", torch.stack(images), names)
