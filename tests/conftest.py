"""Shared fixtures: tiny models with known maths, and the real offline ImageNet model."""

from __future__ import annotations

import engines  # noqa: F401  (first, before torch: its OpenMP and thread settings, engines/core/runtime.py)
import pytest
import torch
from torch import nn

from engines.models.catalogue import freeze


class LinearModel(nn.Module):
    """f(x) = W·vec(x) + b: its gradient map must be the weight row exactly."""

    def __init__(self, channels: int = 3, size: int = 8, classes: int = 5, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(channels * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class SmoothCNN(nn.Module):
    """A small smooth (softplus) CNN with batch norm, for properties beyond linear models."""

    def __init__(self, classes: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Softplus(beta=4),
            nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.Softplus(beta=4),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
        )
        with torch.no_grad():  # non-trivial running statistics, as after training
            self.body[1].running_mean.uniform_(-0.2, 0.2)
            self.body[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * 4


@pytest.fixture
def linear_model() -> nn.Module:
    return freeze(LinearModel())


@pytest.fixture
def smooth_model() -> nn.Module:
    return freeze(SmoothCNN())


@pytest.fixture
def small_images() -> torch.Tensor:
    """Three 3×8×8 images in (0.1, 0.9), so small perturbations stay inside [0, 1]."""
    generator = torch.Generator().manual_seed(1)
    return 0.1 + 0.8 * torch.rand((3, 3, 8, 8), generator=generator)


@pytest.fixture(scope="session")
def efficientnet():
    import engines

    return engines.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def chelsea(efficientnet) -> torch.Tensor:
    import engines

    return efficientnet.preprocess(engines.read_image(engines.sample_images()["chelsea"]))
