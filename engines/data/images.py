"""Reading and checking images, and the catalogue of bundled sample photos.

Every picture the dashboard shows goes through :func:`read_image`, which turns an
upload, a path or raw bytes into an 8-bit RGB :class:`PIL.Image.Image`, or refuses
with an :class:`ImageError` whose message tells a person what is wrong and what to
do about it. The checks run cheapest first: the byte count before anything is
parsed, the header's pixel count before any pixel is decoded, then a full decode
so a damaged file fails here rather than halfway through a saliency map.

Only Pillow's decoders read user data; nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
"""Largest file accepted, in bytes (25 MiB)."""

MAX_PIXELS = 40_000_000
"""Largest image accepted, in pixels (width × height: 40 megapixels)."""

MAX_ASPECT = 20
"""Largest ratio of an image's longer side to its shorter side accepted (20:1).

Panoramas of 10:1 pass; a 1 × 8000 strip does not. Together with :data:`MAX_PIXELS` it bounds
every size an accepted image can reach on its way to a model: the model's preprocessing crops
the central part of at most 2:1 before resizing (see ``LoadedModel.preprocess``)."""

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
"""Pillow format names :func:`read_image` will try; no other decoder sees the data."""

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"
"""The repository's folder of bundled sample images."""

_SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MASK_SUFFIX = ".mask.png"
_FORMATS_IN_WORDS = "PNG, JPEG, WebP, BMP, TIFF or GIF"
_WHITE = (255, 255, 255, 255)

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]


class ImageError(ValueError):
    """An image was refused; the message says why and what to do, for a person to read."""


def read_image(
    source: ImageSource,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Read an image and return it as an 8-bit RGB Pillow image.

    Args:
        source: the raw bytes of an image file, a path to one (``str`` or
            ``os.PathLike``), or a binary file-like object such as Streamlit's
            ``UploadedFile`` (read from its start when it can seek).
        max_bytes: largest file accepted, in bytes (default 25 MiB); checked
            before anything is parsed.
        max_pixels: largest image accepted, in pixels (width × height, default
            40 megapixels); checked from the header before any pixel is decoded.
            Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``)
            also applies when it is lower.

    Returns:
        A new RGB image, detached from the source. For animations and
        multi-page files it is the first frame; EXIF orientation is applied;
        transparent pixels are composited over white; 16-bit and 32-bit
        greyscale is scaled to 8 bits by its bit depth and float greyscale by
        its range.

    Raises:
        ImageError: the source is empty, not a regular file (a device or pipe),
            too large in bytes or pixels, longer than :data:`MAX_ASPECT` times its
            width (or the other way round), not one
            of :data:`SUPPORTED_FORMATS`, damaged or cut short, or in a colour
            mode that cannot be shown as RGB.
    """
    data = read_bytes(source, max_bytes=max_bytes)
    try:
        with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
            _check_pixels(image.size, max_pixels)
            _decode(image)
            return _to_rgb(_apply_orientation(image))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"This file is not an image Pillow can read ({_FORMATS_IN_WORDS}). "
            "Upload one of those."
        ) from None
    except Image.DecompressionBombError:
        raise ImageError(
            "This image has far more pixels than the limit of "
            f"{_megapixels(_pixel_limit(max_pixels))} "
            "megapixels. Resize it and upload it again."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        raise _damaged(None, error) from None


def read_bytes(source: ImageSource, *, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """Return the raw bytes of ``source``, refusing empty input or more than ``max_bytes``.

    A path's size is checked before it is opened, and a file-like object is read
    at most ``max_bytes + 1`` bytes, so an oversized file is never held in memory
    whole. Use the result for :func:`image_digest` and then :func:`read_image`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(Path(source), max_bytes)
    elif hasattr(source, "read"):
        data = _read_stream(source, max_bytes)
    else:
        raise ImageError(
            f"Cannot read an image from a {type(source).__name__}; "
            "give bytes, a file path or an open binary file."
        )
    if not data:
        raise ImageError("The file is empty (0 bytes). Upload an image file.")
    _check_bytes(len(data), max_bytes)
    return data


def image_digest(data: bytes) -> str:
    """Return the SHA-256 hex digest of an image file's raw bytes (the cache key for its maps)."""
    return hashlib.sha256(data).hexdigest()


def sample_images() -> dict[str, Path]:
    """Return the bundled sample images, keyed by file stem (``"chelsea"``, ``"shapes_circle"``).

    Lists the PNG and JPEG files in :data:`SAMPLES_DIR`, sorted by name, leaving out
    the ``<stem>.mask.png`` ground-truth masks (see :func:`sample_mask`).
    """
    if not SAMPLES_DIR.is_dir():
        return {}
    return {
        path.stem: path
        for path in sorted(SAMPLES_DIR.iterdir())
        if path.is_file()
        and path.suffix.lower() in _SAMPLE_SUFFIXES
        and not path.name.lower().endswith(_MASK_SUFFIX)
    }


def sample_mask(name: str) -> Path | None:
    """Return the ``<name>.mask.png`` beside the sample called ``name``, or None if it has none."""
    if not name or Path(name).name != name:
        return None
    path = SAMPLES_DIR / f"{name}{_MASK_SUFFIX}"
    return path if path.is_file() else None


def _read_path(path: Path, max_bytes: int) -> bytes:
    """Read a regular file from disk, checking its size before reading it.

    The file is opened without blocking (a pipe would wait for a writer) and checked through its
    open descriptor, so a device (``/dev/zero`` reads forever and says its size is 0), a pipe or
    a socket is refused before a byte is read, and at most ``max_bytes + 1`` bytes are read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(info.st_mode):
                raise ImageError(
                    f"{path} is not a regular file (it is a device, a pipe or a socket). Give the path of an image file."
                )
            _check_bytes(info.st_size, max_bytes)
            with os.fdopen(fd, "rb", closefd=True) as stream:
                fd = -1
                return stream.read(max_bytes + 1)
        finally:
            if fd >= 0:
                os.close(fd)
    except FileNotFoundError:
        raise ImageError(f"There is no file at {path}. Check the path.") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not an image file. Pick a file.") from None
    except PermissionError:
        raise ImageError(f"{path} cannot be read (permission denied).") from None
    except (OSError, ValueError) as error:  # a name too long, a loop of links, a NUL in the path
        raise ImageError(f"{str(path)[:200]} cannot be read ({getattr(error, 'strerror', None) or error}).") from None


def _read_stream(stream: BinaryIO, max_bytes: int) -> bytes:
    """Read a binary file-like object from its start, at most ``max_bytes + 1`` bytes."""
    seekable = getattr(stream, "seekable", None)
    if callable(seekable) and seekable():
        stream.seek(0)
    data = stream.read(max_bytes + 1)
    if isinstance(data, str):
        raise ImageError("The file was opened as text; open it in binary mode ('rb').")
    return bytes(data)


def _check_bytes(size: int, max_bytes: int) -> None:
    """Refuse a file of more than ``max_bytes`` bytes."""
    if size > max_bytes:
        raise ImageError(
            f"This file is larger than the limit of {_file_size(max_bytes)}. "
            "Upload a smaller file, or resize or recompress the image first."
        )


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image whose header says it has more than ``max_pixels`` pixels.

    Pillow's own bomb limit also applies when lower, so Pillow never decodes an
    image it would only have warned about.
    """
    width, height = size
    limit = _pixel_limit(max_pixels)
    if width * height > limit:
        raise ImageError(
            f"This image is {width} × {height} pixels ({_megapixels(width * height)} "
            f"megapixels); the limit is {_megapixels(limit)} megapixels. "
            "Resize it and upload it again."
        )
    if width < 1 or height < 1:
        raise ImageError(f"This image is {width} × {height} pixels: it has no pixels to show.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(
            f"This image is {width} × {height} pixels, {max(width, height) / min(width, height):.3g} times as "
            f"long as it is wide; the limit is {MAX_ASPECT}:1. Crop it to the part you want explained "
            "and upload it again."
        )


def _pixel_limit(max_pixels: int) -> int:
    """The pixel limit in force: ``max_pixels``, or Pillow's bomb limit when that is lower."""
    if Image.MAX_IMAGE_PIXELS is None:
        return max_pixels
    return min(max_pixels, Image.MAX_IMAGE_PIXELS)


def _decode(image: Image.Image) -> None:
    """Decode every pixel of the first frame, turning a damaged file into an ImageError."""
    try:
        image.seek(0)
        image.load()
    except Image.DecompressionBombError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        raise _damaged(image.format, error) from None


def _damaged(image_format: str | None, error: Exception) -> ImageError:
    """The refusal for a file whose header or pixels fail to decode."""
    return ImageError(
        f"This {image_format or 'image'} file is damaged or cut short, so it cannot "
        f"be decoded ({error}). Save it again or upload another file."
    )


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate or flip the image as its EXIF orientation tag says.

    A broken EXIF block is ignored rather than refusing a picture that decodes.
    """
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # EXIF parsing has many failure modes; the pixels are fine.
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return a new 8-bit RGB copy of an image in any mode Pillow decodes."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        return _integer_grey_to_rgb(image)
    if mode == "F":
        return _float_grey_to_rgb(image)
    if image.has_transparency_data:
        return _over_white(image)
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageError(
            f"This image uses the {mode} colour mode, which cannot be shown as RGB. "
            "Save it as an RGB or greyscale image and upload it again."
        ) from None


def _over_white(image: Image.Image) -> Image.Image:
    """Composite an image with alpha (or a transparent palette colour) over white."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _integer_grey_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit or 32-bit integer greyscale to 8 bits by its bit depth.

    ``I;16*`` is 16-bit, so 65535 maps to 255 and 32768 to 128. Mode ``I`` holds
    32-bit integers but is mostly 16-bit data widened; it is scaled as 16-bit when
    every value fits in 0..65535 and by its range otherwise.
    """
    values = np.asarray(image).astype(np.float64)  # one copy, scaled in place below
    if image.mode == "I" and (values.min() < 0 or values.max() > 65535):
        return _grey_by_range(values)
    values /= 257.0
    return _grey(values)


def _float_grey_to_rgb(image: Image.Image) -> Image.Image:
    """Scale float greyscale to 8 bits by its range (not-a-number counts as the minimum)."""
    return _grey_by_range(np.asarray(image).astype(np.float64))


def _grey_by_range(values: np.ndarray) -> Image.Image:
    """Map the smallest finite value to 0 and the largest to 255; a constant image is black.

    Works in place on `values` (a private float copy), so a 40-megapixel image costs one array.
    """
    finite = np.isfinite(values)
    if not finite.any():
        return _grey(np.zeros_like(values))
    low, high = values[finite].min(), values[finite].max()
    values[~finite] = low
    del finite
    span = high - low
    if span > 0:
        values -= low
        values *= 255.0 / span
    else:
        values[...] = 0
    return _grey(values)


def _grey(values: np.ndarray) -> Image.Image:
    """Round an (H, W) array of 0..255 values (a private float copy, rounded in place) to an
    8-bit greyscale image, as RGB."""
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    grey = values.astype(np.uint8)  # (H, W)
    del values
    return Image.fromarray(grey).convert("RGB")


def _file_size(n_bytes: int) -> str:
    """Format a byte count for a message in binary units (``"25 MB"``, ``"512 KB"``, ``"10 bytes"``)."""
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.3g} MB"
    if n_bytes >= 2**10:
        return f"{n_bytes / 2**10:.3g} KB"
    return f"{n_bytes} bytes"


def _megapixels(n_pixels: int) -> str:
    """Format a pixel count in megapixels for a message (``"40"``, ``"0.25"``)."""
    return f"{n_pixels / 1e6:.3g}"
