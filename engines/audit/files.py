"""The audit's inputs: which files in a folder are images, their masks, and loading them in workers.

A file is an image when its suffix is one `engines.read_image` reads (.png .jpg .jpeg .bmp .gif
.tif .tiff .webp, any case); `<stem>.mask.png` is not an image but the ground-truth object mask
of `<stem>.<ext>` beside it (the convention of assets/samples/). Other files are ignored.

Loading runs in `DataLoader` worker processes while the main process computes maps: a worker
reads the file, applies the model's own preprocessing and resizes the mask the same way. A bad
file never raises in a worker: its item carries the `ImageError` message instead.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from engines.data.images import ImageError, read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File suffixes taken as images: those of the formats in `images.SUPPORTED_FORMATS`."""

MASK_SUFFIX = ".mask.png"


@dataclass(frozen=True)
class ImageFile:
    """One image to audit: `name` is its path relative to the folder, with "/" separators."""

    name: str
    path: Path
    mask: Optional[Path]


@dataclass
class Loaded:
    """What a worker hands back: the model input `x` `(3, S, S)` in [0, 1] and the mask `(S, S)`
    bool (None without one), or `error` (why the image cannot be read) with `x` None.
    `mask_error` says why a mask beside the image was not used."""

    file: ImageFile
    x: Optional[torch.Tensor] = None
    mask: Optional[torch.Tensor] = None
    error: Optional[str] = None
    mask_error: Optional[str] = None


def find_images(folder: str | Path, exclude: Optional[Path] = None, include: Optional[list[str]] = None) -> list[ImageFile]:
    """Every image under `folder` (recursively), sorted by relative path, each with the
    `<stem>.mask.png` beside it when there is one. Files and folders whose names start with "."
    are skipped, and so is everything under `exclude` (the audit's own output folder, so its
    overlay PNGs are never audited). `include`: glob patterns (`fnmatch`, on the relative path
    with "/" separators); when given, only images matching one of them are taken."""
    root = Path(folder)
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if skip is not None and (path.resolve() == skip or skip in path.resolve().parents):
            continue
        lower = path.name.lower()
        if lower.endswith(MASK_SUFFIX) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if include and not any(fnmatch.fnmatch(relative.as_posix(), pattern) for pattern in include):
            continue
        mask = path.with_name(f"{path.stem}{MASK_SUFFIX}")
        found.append(ImageFile(relative.as_posix(), path, mask if mask.is_file() else None))
    return sorted(found, key=lambda f: f.name)


def crop_like_model(mask: torch.Tensor, resize: int, size: int) -> torch.Tensor:
    """A bool mask `(H, W)` moved through `LoadedModel.preprocess`'s geometry: its shorter side
    resized to `resize` with nearest neighbours, then centre-cropped to `size` × `size`."""
    resized = TF.resize(mask[None].to(torch.uint8), [resize], interpolation=InterpolationMode.NEAREST)
    return TF.center_crop(resized, [size, size])[0].bool()  # (S, S)


class ImageFiles(Dataset):
    """The images as model inputs: item i reads `files[i]`, turns it into `(3, S, S)` with
    `preprocess` (a `LoadedModel.preprocess`) and its mask into `(S, S)` with `crop_like_model`."""

    def __init__(self, files: list[ImageFile], preprocess: Callable[[Image.Image], torch.Tensor], resize: int,
                 size: int):
        self.files = files
        self.preprocess = preprocess
        self.resize = resize
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Loaded:
        file = self.files[index]
        try:
            image = read_image(file.path)
        except ImageError as error:
            return Loaded(file, error=str(error))
        try:
            item = Loaded(file, x=self.preprocess(image)[0])  # (3, S, S)
        except Exception as error:  # never raise in a worker: the run goes on without this file
            return Loaded(file, error=f"The image cannot be prepared for the model ({error}).")
        if file.mask is not None:
            try:
                item.mask = self._mask(file.mask, image.size)
            except ImageError as error:
                item.mask_error = str(error)
        return item

    def _mask(self, path: Path, image_size: tuple[int, int]) -> torch.Tensor:
        """The mask file as bool `(S, S)`: pixels brighter than half are inside the object."""
        picture = read_image(path)
        if picture.size != image_size:
            raise ImageError(f"The mask is {picture.size[0]} × {picture.size[1]} pixels but its image is "
                             f"{image_size[0]} × {image_size[1]}; a mask must match its image.")
        mask = TF.to_image(picture.convert("L"))[0] > 127  # (H, W)
        mask = crop_like_model(mask, self.resize, self.size)
        if not mask.any():
            raise ImageError("The mask marks no pixel inside the part of the image the model sees.")
        return mask


def _one_thread(_: int) -> None:
    """Workers use one thread each, leaving the cores to the main process's passes."""
    torch.set_num_threads(1)


def _single(batch: list[Loaded]) -> Loaded:
    return batch[0]


def loader(dataset: ImageFiles, workers: int = 2) -> DataLoader:
    """Items in order, one at a time, read by `workers` processes ahead of the main one (0: in
    the main process)."""
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers, collate_fn=_single,
                      worker_init_fn=_one_thread if workers else None, prefetch_factor=2 if workers else None)
