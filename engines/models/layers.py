"""A model's layers, for the CAM maps: the default target layer, and the convolutional layers
with the size of their output (the Explore page's layer picker).

Layer names are module names as `model.named_modules()` gives them for the model the engines
see (a catalogue model's `LoadedModel.model`, whose network sits under `net.`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from engines.core import passes
from engines.core.passes import TORCHSCRIPT_LAYERS, LayerUnavailable


def _module(model: Any) -> nn.Module:
    module = getattr(model, "model", model)
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    return module


def _scripted(module: nn.Module) -> bool:
    return any(isinstance(m, torch.jit.ScriptModule) for m in module.modules())


def default_layer(model: Any) -> str:
    """The layer CAM maps use unless told otherwise: the one the model's catalogue record names
    (`cam_layer`), else its last `nn.Conv2d`. LayerUnavailable for a TorchScript model or a
    model without a convolution."""
    module = _module(model)
    named = getattr(module, "cam_layer", None)
    if named:
        return named
    convolutions = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if convolutions:
        return convolutions[-1]
    if _scripted(module):
        raise LayerUnavailable(f"No CAM layer: {TORCHSCRIPT_LAYERS}")
    raise LayerUnavailable("the model has no convolutional layer, so it has no feature map for CAM maps")


@dataclass(frozen=True)
class Layer:
    """One layer that gives a feature map: its name, its module type, and its output's shape for
    one image, `(channels, height, width)`."""

    name: str
    kind: str
    shape: tuple[int, int, int]

    def describe(self) -> str:
        """`name (Type, K × h × w)`, as the layer picker shows it."""
        channels, height, width = self.shape
        return f"{self.name} ({self.kind}, {channels} × {height} × {width})"


def conv_layers(model: Any, size: Optional[tuple[int, int]] = None) -> list[Layer]:
    """The model's convolutional layers, in module order, with their output shapes: every
    `nn.Conv2d` and every block that holds one, whose output is a feature map `(N, K, h, w)` and
    that runs once per pass (the layers a CAM map can use). One forward pass, on a grey image of
    `size` (H, W) (default: a LoadedModel's input size). LayerUnavailable for a TorchScript model.
    """
    module = _module(model)
    if size is None:
        if not hasattr(model, "input_size"):
            raise ValueError("give the input size (H, W) for a bare torch module")
        size = (model.input_size, model.input_size)
    if _scripted(module):
        raise LayerUnavailable(f"No layers to choose from: {TORCHSCRIPT_LAYERS}")
    candidates = {}
    for name, m in module.named_modules():
        if name and (isinstance(m, nn.Conv2d) or any(isinstance(c, nn.Conv2d) for c in m.modules())):
            candidates[name] = type(m).__name__
    x = torch.full((1, 3, *size), 0.5)
    seen = passes.layer_shapes(module, x, list(candidates))
    return [
        Layer(name, kind, tuple(seen[name][0]))
        for name, kind in candidates.items()
        if name in seen and len(seen[name][0]) == 3 and seen[name][1] == 1
    ]
