"""The bundled samples as the model sees them: batches of preprocessed images and their object masks."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from PIL import Image

from engines.data.images import image_digest, read_image, sample_images, sample_mask


def sample_batch(loaded, *, leave_out_digest: Optional[str] = None) -> tuple[Optional[torch.Tensor], tuple[str, ...]]:
    """Every bundled sample preprocessed for `loaded` (a `LoadedModel`): `(images (M, 3, S, S), names)`,
    leaving out the sample whose bytes have `leave_out_digest`; `(None, ())` when none is left."""
    chosen = [(name, data) for name, data in ((n, p.read_bytes()) for n, p in sample_images().items())
              if image_digest(data) != leave_out_digest]
    if not chosen:
        return None, ()
    images = torch.cat([loaded.preprocess(read_image(data)) for _, data in chosen])  # (M, 3, S, S)
    return images, tuple(name for name, _ in chosen)


def object_mask(sample: str, size: int) -> Optional[torch.Tensor]:
    """The bundled object mask of `sample` as a `(size, size)` bool tensor (resized with nearest
    neighbours where its size differs), or None when the sample has no mask."""
    path = sample_mask(sample)
    if path is None:
        return None
    image = Image.open(path).convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(image) > 127)
