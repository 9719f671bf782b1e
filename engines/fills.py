"""Reference images made from an input: the baselines of integrated gradients and, later, the
fills of occlusion. All work in pixel units ([0, 1]), so black is 0 and white is 1."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

FILLS = ("black", "white", "grey", "mean", "blur")


def blur(x: torch.Tensor, sigma_fraction: float = 0.05) -> torch.Tensor:
    """Gaussian blur of `(N, C, H, W)` images with σ = `sigma_fraction` × the shorter side."""
    sigma = max(0.5, sigma_fraction * min(x.shape[-2:]))
    kernel = 2 * int(3 * sigma) + 1
    kernel = min(kernel, 2 * (min(x.shape[-2:]) // 2) - 1) if min(x.shape[-2:]) > 2 else 1
    return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma]) if kernel > 1 else x.clone()


def fill_image(x: torch.Tensor, kind: str) -> torch.Tensor:
    """An image of `x`'s shape `(N, C, H, W)`: black (0), white (1), grey (0.5), each image's
    mean colour, or a blurred copy."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "white":
        return torch.ones_like(x)
    if kind == "grey":
        return torch.full_like(x, 0.5)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        return blur(x)
    raise ValueError(f"fill must be one of {', '.join(FILLS)}; got {kind!r}")
