"""Small models built in code for teaching and tests: cases where the answer is known.

`saturated_toy()` is docs/methods.md §3's key demonstration case: a model saturated at its image x
(its target logit sits on a flat plateau), so the gradient map is exactly zero, while a finite
darkening of one known region moves the logit a lot. The gradient is blind there; the finite-
difference (secant) and nonlinearity maps, our nonlinear family after Rosenzweig et al., find it.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.models.catalogue import LoadedModel, ModelSpec, Normalised, freeze, warm_up

SIZE = 64
"""The toy image's side, in pixels."""
PATCH = 16
"""The region grid the driving square is aligned to: it is exactly one region of side 16."""
REGION = (16, 32, 32, 48)
"""The driving square `(row0, row1, col0, col1)`, half-open: region (row 1, col 2) of the 16-grid."""
SQUARE = 0.9
"""Brightness of the square in the toy image (pixel units)."""
LOW, HIGH = 0.38, 0.88
"""The ramp of the detector: the square's mean brightness m is read as `clamp((m − LOW) / (HIGH −
LOW), 0, 1)`; above HIGH it is saturated (flat), so the image's m = 0.9 sits on the plateau."""
SCALE = 10.0
"""Logit gap between a fully present and a fully absent square."""
CATEGORIES = ["square present", "square absent"]


class SquareDetector(nn.Module):
    """`present = SCALE·(clamp((m − LOW)/(HIGH − LOW), 0, 1) − ½)`, `absent = −present`, where m is
    the mean of the driving square over its pixels and channels (a fixed convolution). The clamp is
    two ReLUs: `ReLU(u) − ReLU(u − 1)`. Logits `(N, 2)`."""

    def __init__(self) -> None:
        super().__init__()
        r0, r1, c0, c1 = REGION
        self.pool = nn.Conv2d(3, 1, kernel_size=SIZE, bias=False)  # one output per image
        self.ramp = nn.Linear(1, 2)  # u and u − 1
        self.head = nn.Linear(2, 2)  # present, absent
        with torch.no_grad():
            weight = torch.zeros(1, 3, SIZE, SIZE)
            weight[:, :, r0:r1, c0:c1] = 1.0 / (3 * (r1 - r0) * (c1 - c0))
            self.pool.weight.copy_(weight)
            width = HIGH - LOW
            self.ramp.weight.copy_(torch.full((2, 1), 1.0 / width))
            self.ramp.bias.copy_(torch.tensor([-LOW / width, -LOW / width - 1.0]))
            self.head.weight.copy_(torch.tensor([[SCALE, -SCALE], [-SCALE, SCALE]]))
            self.head.bias.copy_(torch.tensor([-SCALE / 2, SCALE / 2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.pool(x).flatten(1)  # (N, 1) mean brightness of the square
        return self.head(torch.relu(self.ramp(m)))  # (N, 2)


def toy_image() -> torch.Tensor:
    """The toy image `(1, 3, 64, 64)` in pixel units: a dim, faintly textured background (fixed
    seed) with a bright square (0.9) on the driving region."""
    generator = torch.Generator().manual_seed(0)
    x = 0.25 + 0.1 * torch.rand((1, 3, SIZE, SIZE), generator=generator)
    x[:, 2] += 0.1  # a bluish grey, so the square stands out
    r0, r1, c0, c1 = REGION
    x[:, :, r0:r1, c0:c1] = SQUARE
    return x.clamp(0, 1)


def toy_region() -> tuple[int, int, int, int]:
    """The driving square `(row0, row1, col0, col1)` in pixels, half-open."""
    return REGION


def toy_region_cell() -> tuple[int, int]:
    """The driving square as `(row, col)` of the grid of side `PATCH` (for `response_curve`)."""
    return REGION[0] // PATCH, REGION[2] // PATCH


def saturated_toy() -> tuple[LoadedModel, torch.Tensor]:
    """A frozen two-class model saturated at its image, and that image `(1, 3, 64, 64)`.

    At the image the square's mean is 0.9, above the ramp's top (0.88): the "square present"
    logit (5) is on a plateau and its gradient is exactly zero everywhere. Darkening the square by
    ε = 0.1 drops the logit from 5 to 3.4; by 0.5 the prediction flips to "square absent". Nothing
    outside the square affects the model. Deterministic; on the CPU.
    """
    spec = ModelSpec(
        name="saturated_toy",
        label="Saturated toy (a square detector on a plateau)",
        dataset="toy",
        input_size=SIZE,
        resize=SIZE,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        source="engines/models/toys.py (built in code)",
        build=SquareDetector,
        categories=lambda: list(CATEGORIES),
    )
    model = freeze(Normalised(spec.build(), spec.mean, spec.std))
    _, seconds = warm_up(model, SIZE, repeats=1)
    return LoadedModel(spec.name, model, spec.categories(), spec, torch.device("cpu"), seconds), toy_image()
