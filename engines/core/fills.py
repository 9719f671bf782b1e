"""Reference images made from an input: the baselines of integrated gradients and the fills of
occlusion. All work in pixel units ([0, 1]), so black is 0 and white is 1.

`fill_image(x, kind)` gives the baselines (`FILLS`); `occlusion_fill(x, kind, step, seed)` adds
the occlusion panel's fills (`OCCLUSION_FILLS`, docs/methods.md §5): seeded noise, and pixels made
darker or brighter by a step (the future work of Llorente et al. 2023, §2).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

FILLS = ("black", "white", "grey", "mean", "blur")
OCCLUSION_FILLS = FILLS + ("noise", "gaussian_noise", "darker", "brighter")


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


def noise_image(shape: tuple[int, ...], seed: int, gaussian: bool = False) -> torch.Tensor:
    """Seeded noise of `shape` `(C, H, W)`, drawn on the CPU so it does not depend on the device:
    uniform in [0, 1], or standard normal when `gaussian`. The same seed gives the same noise."""
    generator = torch.Generator().manual_seed(int(seed))
    if gaussian:
        return torch.randn(shape, generator=generator)
    return torch.rand(shape, generator=generator)


def occlusion_fill(x: torch.Tensor, kind: str, step: float = 0.1, seed: int = 0) -> torch.Tensor:
    """What occluded pixels of `x` `(N, C, H, W)` become, in pixel units, same shape as `x`.

    The `FILLS` of `fill_image`, and:

    - ``noise``: uniform noise in [0, 1];
    - ``gaussian_noise``: normal noise with each image's per-channel mean and standard deviation,
      clipped to [0, 1] (noise that keeps the image's colour statistics);
    - ``darker`` / ``brighter``: `x − step` / `x + step`, clipped to [0, 1] (`step` in pixel units).

    Noise is one pattern `(C, H, W)` drawn from `seed` and shared by every image of the batch, so
    an image gets the same fill alone or in a batch.
    """
    if kind in FILLS:
        return fill_image(x, kind)
    if kind in ("darker", "brighter"):
        if not 0 <= step <= 1:
            raise ValueError(f"step must be a number in [0, 1] (pixel units); got {step!r}")
        return (x - step if kind == "darker" else x + step).clamp(0, 1)
    if kind == "noise":
        return noise_image(tuple(x.shape[1:]), seed).to(x).expand_as(x).clone()
    if kind == "gaussian_noise":
        mean = x.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
        std = x.std(dim=(2, 3), keepdim=True) if x.shape[2] * x.shape[3] > 1 else torch.zeros_like(mean)
        return (mean + std * noise_image(tuple(x.shape[1:]), seed, gaussian=True).to(x)).clamp(0, 1)
    raise ValueError(f"fill must be one of {', '.join(OCCLUSION_FILLS)}; got {kind!r}")
