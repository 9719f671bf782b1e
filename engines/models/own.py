"""A person's own weights for a catalogue architecture: no code from the file ever runs.

The common case of "my own model" is a known network fine-tuned on other classes ("my ResNet-50
with 5 classes"). Such a model arrives as a `safetensors` file (a JSON header and raw tensor
bytes: a format with no code in it at all) plus the architecture's name and the class list. The
network is built here from the catalogue's own code with `num_classes = len(classes)`, the
tensors are checked against its state dict (names, shapes, floating point) and loaded; input
size, resize, mean and std default to the architecture's catalogue entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, Union

import torch
from torch import nn

from engines.core import passes
from engines.models.catalogue import (
    LoadedModel,
    ModelFileError,
    ModelSpec,
    _spec,
    _wrap,
    check_input_size,
    check_normalisation,
    model_bytes,
    parse_categories,
)


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(classes: int) -> nn.Module:
        import torchvision.models as tvm

        return tvm.get_model(name, weights=None, num_classes=classes)

    return build


def _efficientnet_lite0(classes: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=classes)


def _shapes_cnn(classes: int) -> nn.Module:
    from engines.models import shapes

    return shapes.ShapesNet(num_classes=classes)


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "efficientnet_lite0": _efficientnet_lite0,
    "shapes_cnn": _shapes_cnn,
    **{name: _torchvision(name) for name in ("resnet18", "resnet50", "mobilenet_v3_large", "convnext_tiny", "vit_b_16")},
}
"""Catalogue architectures a safetensors file may carry weights for, each built for K classes."""

_PREFIXES = ("module.", "net.", "model.")  # DataParallel, our Normalised wrapper, Lightning


def read_safetensors(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; ModelFileError for anything else (no code is run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as error:
        raise ModelFileError(
            "This file is not a safetensors file. Save your weights with "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors'). "
            f"({str(error)[:200]})"
        ) from None
    if not tensors:
        raise ModelFileError("The safetensors file holds no tensors.")
    return tensors


def _strip_prefix(tensors: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """The tensors with one common wrapper prefix ("module.", "net.", "model.") removed, when
    that makes their names match the architecture's."""
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in tensors) and not set(tensors) & wanted:
            return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _check_state(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], architecture: str,
                 classes: int) -> dict[str, torch.Tensor]:
    """Refuses missing, unexpected, mis-shaped or non-floating tensors, naming the first few."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise ModelFileError(
            f"These weights are not a {architecture}: tensor names {'; '.join(parts)}. Pick the "
            "architecture they were trained with, and save model.state_dict() as is."
        )
    for key, reference in expected.items():
        given = tensors[key]
        if tuple(given.shape) != tuple(reference.shape):
            hint = (f" The class list has {classes} names; is that the number the model was trained with?"
                    if given.dim() >= 1 and reference.dim() >= 1 and given.shape[1:] == reference.shape[1:] else "")
            raise ModelFileError(
                f"The tensor {key} has shape {tuple(given.shape)}, but a {architecture} with {classes} classes "
                f"needs {tuple(reference.shape)}.{hint}"
            )
        if reference.is_floating_point() and not given.is_floating_point():
            raise ModelFileError(f"The tensor {key} holds {given.dtype}, not floating-point weights.")
    return {k: v.to(expected[k].dtype) for k, v in tensors.items()}


def load_own_weights(
    source: Union[bytes, str],
    architecture: str,
    categories: Union[list[str], str, bytes],
    *,
    input_size: Optional[int] = None,
    resize: Optional[int] = None,
    mean: Optional[tuple[float, float, float]] = None,
    std: Optional[tuple[float, float, float]] = None,
    name: str = "own",
    device: str = "auto",
) -> LoadedModel:
    """A catalogue `architecture` with a person's weights (a safetensors file) and class list.

    Input size, resize, mean and std default to the architecture's catalogue entry. Refuses with
    ModelFileError: an unknown architecture, a file that is not safetensors, tensors that do not
    fit the architecture built for K = len(classes) classes, and a model whose logits on a grey
    image are not finite.
    """
    if architecture not in ARCHITECTURES:
        raise ModelFileError(
            f"Unknown architecture {architecture!r}; weights can be loaded for: {', '.join(ARCHITECTURES)}."
        )
    names = categories if isinstance(categories, list) else parse_categories(categories)
    if not names or not all(isinstance(n, str) for n in names):
        raise ModelFileError("The class list must be a non-empty list of strings.")
    base = _spec(architecture)
    size = check_input_size(base.input_size if input_size is None else input_size)
    mean, std = check_normalisation(base.mean if mean is None else mean, base.std if std is None else std)
    tensors = read_safetensors(model_bytes(source))
    try:
        net = ARCHITECTURES[architecture](len(names))
    except ImportError as error:
        raise ModelFileError(f"The {architecture} architecture cannot be built here: {error}.") from None
    expected = net.state_dict()
    state = _check_state(_strip_prefix(tensors, set(expected)), expected, architecture, len(names))
    net.load_state_dict(state, strict=True)
    spec = ModelSpec(
        name=name, label=f"{name} (your {base.label} weights)", dataset="your classes", input_size=size,
        resize=int(resize or (base.resize if input_size is None else size)), mean=mean, std=std,
        source=f"uploaded safetensors weights for {architecture}", build=lambda: net, categories=lambda: names,
    )
    return _wrap(net, spec, names, passes.pick_device(device))
