"""Procedural "shapes with clutter" images and a small CNN trained on them.

Each image holds ONE class-deciding object (a filled shape of random size, position, rotation
and colour) on a cluttered background: a two-colour gradient with a smooth noise texture,
thin lines of random colour and small irregular specks. The object is drawn last, opaque and
without anti-aliasing, so its boolean mask is exactly the set of pixels it covers: the ground
truth for localisation metrics. Object and background lie in opposite luminance bands (one
dark, one light), so the object is always clearly visible.

A sample is made in two steps, ``sample_scene`` (every random draw) and ``render_scene``
(pure drawing), so the same scene can be redrawn without its object: the two renders differ
exactly on the mask.

Pure numpy / Pillow / torch; no Streamlit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "diamond",
    "arrow",
    "crescent",
    "heart",
)
IMAGE_SIZE = 64

TRAIN_SEED = 20240611
TEST_SEED = 77031
TEST_SIZE = 2000  # images in make_dataset(TEST_SIZE, TEST_SEED), the recorded test accuracy

# Per-channel statistics of images in [0, 1] (measured on 4000 training images, rounded).
MEAN: tuple[float, float, float] = (0.497, 0.496, 0.506)
STD: tuple[float, float, float] = (0.255, 0.329, 0.242)

_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_PATH = _ROOT / "assets" / "shapes_cnn.pt"
METADATA_PATH = _ROOT / "assets" / "shapes_cnn.json"
SAMPLES_DIR = _ROOT / "assets" / "samples"
SAMPLE_CLASSES: tuple[str, ...] = ("triangle", "star", "ring", "arrow")
SAMPLES_SEED = 5

# Geometry, as fractions of the image side.
_RADIUS_RANGE = (0.17, 0.38)  # object circumradius: 11 to 24 px at 64 px
_SPECK_RADIUS = 0.045  # largest clutter speck radius: 3 px at 64 px

# Colour, in luminance units (Rec. 601 weights, pixel units in [0, 1]).
_LUMA = np.array([0.299, 0.587, 0.114])
_DARK_BAND = (0.04, 0.38)
_LIGHT_BAND = (0.62, 0.96)
_TEXTURE_AMPLITUDE = 0.06  # smooth background texture, per channel, pixel units
_SENSOR_NOISE = 0.02  # standard deviation of the per-pixel noise over the whole image


# --------------------------------------------------------------------------------------------
# Shapes: outlines in unit coordinates (inside the unit disc, pointing along +x at angle 0)
# --------------------------------------------------------------------------------------------


def _regular(n_vertices: int, start_deg: float, radius: float = 1.0) -> np.ndarray:
    """Vertices (n, 2) of a regular polygon of the given circumradius."""
    a = np.deg2rad(start_deg) + 2 * np.pi * np.arange(n_vertices) / n_vertices
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(inner: float = 0.42) -> np.ndarray:
    """Vertices (10, 2) of a five-pointed star, outer radius 1, inner radius `inner`."""
    pts = _regular(10, 0.0)
    pts[1::2] *= inner
    return pts


def _cross(half_width: float = 0.3) -> np.ndarray:
    """Vertices (12, 2) of a plus sign with arms of half-width `half_width`, reach ~1."""
    w, r = half_width, 0.95
    return np.array(
        [(w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r),
         (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r), (w, r)]
    )


def _arrow() -> np.ndarray:
    """Vertices (7, 2) of an arrow pointing along +x: a shaft and a triangular head."""
    return np.array(
        [(-0.95, -0.2), (0.15, -0.2), (0.15, -0.6), (0.95, 0.0),
         (0.15, 0.6), (0.15, 0.2), (-0.95, 0.2)]
    )


def _heart(n: int = 64) -> np.ndarray:
    """Vertices (n, 2) of the classic parametric heart, centred and scaled into the unit disc."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # y down
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(axis=0) + pts.min(axis=0)) / 2
    return pts / np.linalg.norm(pts, axis=1).max()


_DISC = _regular(64, 0.0)
# Each class: list of (outline, fill) drawn in order on the mask; fill 0 cuts a hole.
_OUTLINES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_DISC, 1)],
    "square": [(_regular(4, 45.0), 1)],
    "triangle": [(_regular(3, 0.0), 1)],
    "star": [(_star(), 1)],
    "cross": [(_cross(), 1)],
    "ring": [(_DISC, 1), (0.6 * _DISC, 0)],
    "diamond": [(np.array([(1.0, 0.0), (0.0, 0.55), (-1.0, 0.0), (0.0, -0.55)]), 1)],
    "arrow": [(_arrow(), 1)],
    "crescent": [(_DISC, 1), (0.8 * _DISC + np.array([0.5, 0.0]), 0)],
    "heart": [(_heart(), 1)],
}
assert tuple(_OUTLINES) == CLASSES


def shape_mask(label: int, center: tuple[float, float], radius: float, angle: float,
               size: int) -> np.ndarray:
    """Boolean mask (size, size) of shape `label` rotated by `angle` (radians), scaled to
    circumradius `radius` (px) and centred at `center` = (x, y) (px). No anti-aliasing."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    for outline, fill in _OUTLINES[CLASSES[label]]:
        pts = outline @ rotation.T * radius + np.asarray(center)  # (V, 2) in px
        draw.polygon([tuple(p) for p in pts.tolist()], fill=fill)
    return np.asarray(canvas, dtype=bool)


# --------------------------------------------------------------------------------------------
# Scenes: every random draw of one sample, then a pure rendering step
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """Every random choice behind one sample; `render_scene` draws it deterministically."""

    size: int
    label: int
    center: tuple[float, float]  # object centre (x, y), px
    radius: float  # object circumradius, px
    angle: float  # object rotation, radians
    object_color: np.ndarray  # (3,) pixel units
    background_colors: np.ndarray  # (2, 3) gradient end colours, pixel units
    gradient_angle: float  # direction of the gradient, radians
    texture: np.ndarray  # (3, k, k) coarse texture grid, pixel units
    clutter: tuple[tuple[str, tuple[float, ...]], ...]  # ("line" | "blob", coordinates)
    clutter_colors: np.ndarray  # (n_clutter, 3) pixel units
    noise: np.ndarray  # (3, size, size) per-pixel noise, pixel units


def _color_in_band(rng: np.random.Generator, band: tuple[float, float]) -> np.ndarray:
    """A random RGB colour (3,) whose luminance lies in `band` (rejection sampling)."""
    while True:
        color = rng.random(3)
        if band[0] <= color @ _LUMA <= band[1]:
            return color


def _sample_clutter(rng: np.random.Generator, size: int):
    """Random thin lines and small irregular blobs: (items, colours (n, 3))."""
    items: list[tuple[str, tuple[float, ...]]] = []
    for _ in range(rng.integers(2, 7)):
        x0, y0, x1, y1 = rng.uniform(-0.1 * size, 1.1 * size, 4)
        items.append(("line", (x0, y0, x1, y1)))
    for _ in range(rng.integers(4, 13)):
        cx, cy = rng.uniform(0, size, 2)
        n = int(rng.integers(5, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.3, 1.0, n) * rng.uniform(0.35, 1.0) * _SPECK_RADIUS * size
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        items.append(("blob", tuple(pts.ravel().tolist())))
    colors = rng.random((len(items), 3))
    return tuple(items), colors


def sample_scene(rng: np.random.Generator, size: int = IMAGE_SIZE) -> Scene:
    """Draw every random choice of one sample from `rng` (class uniform over CLASSES)."""
    label = int(rng.integers(len(CLASSES)))
    radius = float(rng.uniform(*_RADIUS_RANGE) * size)
    lo, hi = radius + 2.0, size - 2.0 - radius  # keeps the object off the border pixels
    center = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
    angle = float(rng.uniform(0, 2 * np.pi))
    dark_object = rng.random() < 0.5
    object_band, background_band = (
        (_DARK_BAND, _LIGHT_BAND) if dark_object else (_LIGHT_BAND, _DARK_BAND)
    )
    object_color = _color_in_band(rng, object_band)
    background_colors = np.stack([_color_in_band(rng, background_band) for _ in range(2)])
    gradient_angle = float(rng.uniform(0, 2 * np.pi))
    k = int(rng.integers(3, 9))
    texture = rng.uniform(-_TEXTURE_AMPLITUDE, _TEXTURE_AMPLITUDE, (3, k, k))
    clutter, clutter_colors = _sample_clutter(rng, size)
    noise = rng.normal(0.0, _SENSOR_NOISE, (3, size, size))
    return Scene(size, label, center, radius, angle, object_color, background_colors,
                 gradient_angle, texture, clutter, clutter_colors, noise)


def _upsample_matrix(k: int, size: int) -> np.ndarray:
    """Bilinear interpolation weights (size, k) from a k-point grid to `size` pixels."""
    pos = (np.arange(size) + 0.5) / size * (k - 1)  # pixel centres in grid units
    weights = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(k)[None, :]))
    return weights


def _background(scene: Scene) -> np.ndarray:
    """Gradient plus smooth texture, (3, H, W) pixel units (not yet clipped)."""
    size = scene.size
    coords = (np.arange(size) + 0.5) / size - 0.5
    ys, xs = np.meshgrid(coords, coords, indexing="ij")  # (H, W) each
    along = np.cos(scene.gradient_angle) * xs + np.sin(scene.gradient_angle) * ys
    t = (along - along.min()) / (along.max() - along.min())  # (H, W) in [0, 1]
    c0, c1 = scene.background_colors
    image = c0[:, None, None] + t[None] * (c1 - c0)[:, None, None]  # (3, H, W)
    w = _upsample_matrix(scene.texture.shape[-1], size)
    return image + np.einsum("hk,ckl,wl->chw", w, scene.texture, w)


def _clutter_index(scene: Scene) -> np.ndarray:
    """Index map (H, W): 0 where no clutter, i + 1 where clutter item i is on top."""
    canvas = Image.new("L", (scene.size, scene.size), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (kind, coords) in enumerate(scene.clutter):
        if kind == "line":
            draw.line(coords, fill=i + 1, width=1)
        else:
            draw.polygon(list(zip(coords[0::2], coords[1::2])), fill=i + 1)
    return np.asarray(canvas, dtype=np.int64)


def render_scene(scene: Scene, with_object: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene: (image float32 (3, H, W) in [0, 1], object mask bool (H, W)).

    With `with_object=False` the object is left out and everything else is drawn identically,
    so the two renders differ exactly on the mask.
    """
    image = _background(scene)
    index = _clutter_index(scene)
    palette = np.concatenate([np.zeros((1, 3)), scene.clutter_colors])  # (n + 1, 3)
    image = np.where(index[None] > 0, palette[index].transpose(2, 0, 1), image)  # (3, H, W)
    mask = shape_mask(scene.label, scene.center, scene.radius, scene.angle, scene.size)
    if with_object:
        image = np.where(mask[None], scene.object_color[:, None, None], image)
    image = np.clip(image + scene.noise, 0.0, 1.0)
    return image.astype(np.float32), mask


def make_sample(rng: np.random.Generator, size: int = IMAGE_SIZE):
    """One sample: (image float32 (3, H, W) in [0, 1], label int, object mask bool (H, W))."""
    scene = sample_scene(rng, size)
    image, mask = render_scene(scene)
    return image, scene.label, mask


def make_dataset(n: int, seed: int, size: int = IMAGE_SIZE):
    """`n` samples from one generator seeded with `seed` (a prefix of a longer set with the
    same seed): (images float (n, 3, H, W) in [0, 1], labels long (n,), masks bool (n, H, W))."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        images[i], labels[i], masks[i] = make_sample(rng, size)
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution (padding keeps the size, or halves it with stride 2), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ShapesNet(nn.Module):
    """Small CNN for the shapes data: six conv/BN/ReLU blocks, global average pooling and a
    linear layer to len(CLASSES) logits.

    The stem is a 4×4 convolution of stride 2 (64 → 32 px): every input pixel falls in exactly
    two windows per axis, so input gradients carry no stride-2 checkerboard. Then 3×3 blocks at
    32, 16 and 8 px (stride 2 between them) with `width`, 2·`width`, 4·`width` channels.

    Takes NORMALISED input `(x - MEAN) / STD` of shape (N, 3, H, W); use `normalize`.
    """

    def __init__(self, num_classes: int = len(CLASSES), width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, kernel=4, stride=2),
            _block(w, w),
            _block(w, 2 * w, stride=2),
            _block(2 * w, 2 * w),
            _block(2 * w, 4 * w, stride=2),
            _block(4 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for normalised images (N, 3, H, W)."""
        x = self.pool(self.features(x)).flatten(1)  # (N, C)
        return self.classifier(x)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """`(x - MEAN) / STD` per channel, for images (N, 3, H, W) in [0, 1]."""
    mean = torch.tensor(MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def load_shapes_net(path: str | Path = WEIGHTS_PATH) -> ShapesNet:
    """The trained ShapesNet from a plain state dict, in eval mode, on the CPU."""
    net = ShapesNet()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def load_metadata(path: str | Path = METADATA_PATH) -> dict:
    """The training record written next to the weights (classes, mean/std, accuracy, ...)."""
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------------------------
# Sample images for the dashboard
# --------------------------------------------------------------------------------------------


def write_pair(path: str | Path, image: np.ndarray, mask: np.ndarray) -> Path:
    """Write one sample as `<stem>.png` (RGB, 8 bit) at `path` and its object mask beside it as
    `<stem>.mask.png` (L, 0/255), the convention `engines.data.images.sample_mask` reads. `image` is
    float (3, H, W) in [0, 1], `mask` bool (H, W). Returns the image path."""
    path = Path(path)
    rgb = np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8)  # (H, W, 3)
    Image.fromarray(rgb).save(path)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path.with_name(f"{path.stem}.mask.png"))
    return path


def write_samples(folder: str | Path = SAMPLES_DIR, seed: int = SAMPLES_SEED,
                  classes: tuple[str, ...] = SAMPLE_CLASSES,
                  size: int = IMAGE_SIZE) -> list[Path]:
    """Write the first sample of each class in `classes` drawn from `default_rng(seed)` as
    `shapes_<class>.png` (RGB, 8 bit) and `shapes_<class>.mask.png` (L, 0/255).
    Returns the image paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wanted = {CLASSES.index(name) for name in classes}
    paths = []
    while wanted:
        image, label, mask = make_sample(rng, size)
        if label not in wanted:
            continue
        wanted.remove(label)
        paths.append(write_pair(folder / f"shapes_{CLASSES[label]}.png", image, mask))
    return paths


def write_test_set(folder: str | Path, count: int, seed: int = TEST_SEED, size: int = IMAGE_SIZE) -> list[Path]:
    """Write the `count` images of `make_dataset(count, seed)` (by default the first `count` test
    images) as `test_<index>_<class>.png` with `test_<index>_<class>.mask.png` beside each, the
    index zero-padded to five digits. Returns the image paths, in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels, masks = make_dataset(count, seed, size)
    return [
        write_pair(folder / f"test_{i:05d}_{CLASSES[int(labels[i])]}.png", images[i].numpy(), masks[i].numpy())
        for i in range(count)
    ]
