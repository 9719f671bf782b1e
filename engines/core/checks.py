"""One validator for saliency maps handed to the engines by callers (curves, occlusion, metrics,
sufficiency), so that every function accepts the same shapes and says the same thing when a map
does not fit."""

from __future__ import annotations

from typing import Any, Optional

import torch


def check_map(saliency_map: Any, x: Optional[torch.Tensor] = None, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The map as a detached `(N, H, W)` tensor of `dtype`; ValueError saying what is wrong otherwise.

    One rule for every caller: `(N, H, W)` maps, or a single `(H, W)` map for a single image.
    With images `x` `(N, C, H, W)` the map must match them in N, H and W and is moved to `x`'s
    device; without, any N is accepted. Values must be finite.
    """
    expected = "(N, H, W)" if x is None else str((x.shape[0], x.shape[2], x.shape[3]))
    if not isinstance(saliency_map, torch.Tensor):
        raise ValueError(f"saliency_map must be a torch.Tensor of shape {expected}; got {type(saliency_map).__name__}")
    saliency = saliency_map.detach().to(dtype)
    if saliency.dim() == 2:
        saliency = saliency[None]  # (1, H, W)
    if saliency.dim() != 3 or (x is not None and tuple(saliency.shape) != (x.shape[0], x.shape[2], x.shape[3])):
        raise ValueError(f"saliency_map must have shape {expected}"
                         f"{' to match the images' if x is not None else ''}; got {tuple(saliency_map.shape)}")
    if not torch.isfinite(saliency).all():
        raise ValueError("saliency_map contains NaN or infinite values")
    return saliency if x is None else saliency.to(x.device)
