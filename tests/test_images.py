"""Tests for engines/data/images.py: every fixture is built in memory, one property per test."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, features

from engines.data import images
from engines.data.images import ImageError, image_digest, read_image, sample_images, sample_mask

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ---------------------------------------------------------------- fixture builders


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """Save a Pillow image to bytes in the given format."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(size=(40, 30)) -> Image.Image:
    """An RGB image whose top-left quarter is red and the rest blue."""
    width, height = size
    array = np.zeros((height, width, 3), np.uint8)  # (H, W, 3)
    array[...] = BLUE
    array[: height // 2, : width // 2] = RED
    return Image.fromarray(array)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows) -> bytes:
    """A PNG from an iterable of filtered-free rows (bytes), for what Pillow cannot write."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(b"\x00" + row) for row in rows) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size, tiny on disk, without allocating its pixels."""
    row = bytes((width + 7) // 8)
    return raw_png(width, height, 1, 0, (row for _ in range(height)))


def pixel(image: Image.Image, xy) -> tuple[int, int, int]:
    """The RGB value at (x, y)."""
    return image.getpixel(xy)


def close(actual, expected, tolerance=3) -> bool:
    """Whether two RGB triples agree within a lossy codec's error."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


# ---------------------------------------------------------------- formats and modes

LOSSLESS = ["PNG", "BMP", "TIFF", "GIF"] + (["WEBP"] if features.check("webp") else [])


@pytest.mark.parametrize("fmt", LOSSLESS + ["JPEG"])
def test_each_supported_format_reads_as_rgb_of_the_same_size(fmt):
    params = {"lossless": True} if fmt == "WEBP" else {}
    result = read_image(encode(quadrants(), fmt, **params))
    assert (result.mode, result.size) == ("RGB", (40, 30))
    assert close(pixel(result, (0, 0)), RED, tolerance=40)
    assert close(pixel(result, (39, 29)), BLUE, tolerance=40)


def test_exif_orientation_6_rotates_the_image_clockwise():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    data = encode(quadrants((40, 30)), "JPEG", quality=95, exif=exif.tobytes())
    result = read_image(data)
    assert result.size == (30, 40)
    # The red top-left quarter ends up top-right after a clockwise turn.
    assert close(pixel(result, (29, 0)), RED, tolerance=40)
    assert close(pixel(result, (0, 0)), BLUE, tolerance=40)


def test_transparent_rgba_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    image.putpixel((0, 0), (255, 0, 0, 0))
    result = read_image(encode(image, "PNG"))
    assert pixel(result, (0, 0)) == WHITE
    assert pixel(result, (3, 3)) == RED


def test_half_transparent_black_over_white_is_mid_grey():
    image = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    assert close(pixel(read_image(encode(image, "PNG")), (0, 0)), (127, 127, 127), tolerance=1)


def test_palette_image_with_a_transparent_index_shows_white_there():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 255, 0] + [255, 0, 0] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    result = read_image(encode(image, "PNG", transparency=0))
    assert pixel(result, (0, 0)) == WHITE
    assert pixel(result, (1, 1)) == RED


def test_grey_with_alpha_composites_over_white():
    image = Image.new("LA", (3, 3), (0, 255))
    image.putpixel((0, 0), (0, 0))
    result = read_image(encode(image, "PNG"))
    assert pixel(result, (0, 0)) == WHITE
    assert pixel(result, (1, 1)) == (0, 0, 0)


def test_cmyk_converts_to_rgb():
    image = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    result = read_image(encode(image, "TIFF"))
    assert result.mode == "RGB"
    assert pixel(result, (0, 0)) == RED


def test_cmyk_jpeg_converts_to_rgb():
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    result = read_image(encode(image, "JPEG", quality=95))
    assert result.mode == "RGB"
    assert close(pixel(result, (8, 8)), RED, tolerance=40)


def test_sixteen_bit_grey_png_scales_by_bit_depth_not_clipping():
    values = np.array([[0, 32768, 65535]], np.uint16)
    result = read_image(encode(Image.fromarray(values), "PNG"))
    assert [pixel(result, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_sixteen_bit_big_endian_grey_tiff_scales_by_bit_depth():
    image = Image.new("I;16B", (2, 1))
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 257)
    result = read_image(encode(image, "TIFF"))
    assert [pixel(result, (x, 0)) for x in range(2)] == [WHITE, (1, 1, 1)]


def test_32_bit_integer_grey_with_16_bit_values_scales_as_16_bit():
    values = np.array([[0, 65535]], np.int32)
    result = read_image(encode(Image.fromarray(values), "TIFF"))
    assert result.mode == "RGB"
    assert [pixel(result, (x, 0))[0] for x in range(2)] == [0, 255]


def test_32_bit_integer_grey_beyond_16_bits_scales_by_range():
    values = np.array([[-100_000, 0, 100_000]], np.int32)
    result = read_image(encode(Image.fromarray(values), "TIFF"))
    assert [pixel(result, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_sixteen_bit_rgb_png_reads_as_8_bit_rgb():
    row = struct.pack(">6H", 65535, 0, 0, 0, 0, 65535)  # red, blue
    result = read_image(raw_png(2, 1, 16, 2, [row]))
    assert result.mode == "RGB"
    assert [pixel(result, (x, 0)) for x in range(2)] == [RED, BLUE]


def test_bilevel_image_reads_as_black_and_white():
    image = Image.new("1", (8, 8), 0)
    image.putpixel((0, 0), 1)
    result = read_image(encode(image, "PNG"))
    assert pixel(result, (0, 0)) == WHITE
    assert pixel(result, (1, 1)) == (0, 0, 0)


def test_float_grey_scales_its_range_to_0_255():
    values = np.array([[-1.0, 1.0, 3.0]], np.float32)
    result = read_image(encode(Image.fromarray(values), "TIFF"))
    assert [pixel(result, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_constant_float_image_reads_without_dividing_by_zero():
    values = np.full((3, 3), 7.5, np.float32)
    result = read_image(encode(Image.fromarray(values), "TIFF"))
    assert np.isfinite(np.asarray(result)).all() and result.size == (3, 3)


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert pixel(read_image(data), (4, 4)) == RED


def test_returned_image_is_detached_from_its_source():
    result = read_image(encode(quadrants(), "PNG"))
    assert type(result) is Image.Image


# ---------------------------------------------------------------- refusals


def refusal(data, **limits) -> str:
    """The lower-cased message of the ImageError that read_image raises for ``data``."""
    with pytest.raises(ImageError) as caught:
        read_image(data, **limits)
    return str(caught.value).lower()


def test_empty_bytes_are_refused_as_empty():
    assert "empty" in refusal(b"")


def test_random_bytes_are_refused_as_not_an_image():
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert "not an image" in refusal(noise)


def test_a_text_file_is_refused_as_not_an_image():
    assert "not an image" in refusal(b"name,score\ncat,0.9\ndog,0.1\n")


def test_a_truncated_png_is_refused_as_damaged():
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    assert "damaged or cut short" in refusal(data[: len(data) // 2])


def test_a_truncated_jpeg_is_refused_as_damaged():
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=95)
    assert "damaged or cut short" in refusal(data[: len(data) // 2])


def test_a_png_with_a_corrupt_header_is_refused():
    data = bytearray(encode(quadrants(), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    message = refusal(bytes(data))
    assert "not an image" in message or "damaged" in message


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_formats_outside_the_supported_list_are_refused(fmt):
    message = refusal(encode(quadrants((16, 16)), fmt))
    assert "not an image pillow can read" in message and "png" in message


def test_a_file_over_max_bytes_is_refused_before_decoding():
    data = encode(quadrants(), "PNG")
    message = refusal(data, max_bytes=len(data) - 1)
    assert "larger than the limit" in message and f"{len(data) - 1} bytes" in message


def test_a_file_at_max_bytes_is_accepted():
    data = encode(quadrants(), "PNG")
    assert read_image(data, max_bytes=len(data)).size == (40, 30)


def test_a_path_over_max_bytes_is_refused(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(quadrants(), "PNG"))
    assert "larger than the limit" in refusal(path, max_bytes=10)


def test_a_stream_over_max_bytes_is_refused():
    stream = io.BytesIO(encode(quadrants(), "PNG"))
    assert "larger than the limit" in refusal(stream, max_bytes=10)


def test_an_image_over_max_pixels_is_refused():
    message = refusal(encode(quadrants((40, 30)), "PNG"), max_pixels=40 * 30 - 1)
    assert "40 × 30 pixels" in message and "megapixels" in message


def test_a_huge_image_with_few_bytes_is_refused_quickly_without_decoding():
    data = bilevel_png(8000, 8000)  # 64 megapixels, a few kilobytes
    assert len(data) < 100_000
    start = time.perf_counter()
    message = refusal(data)
    assert time.perf_counter() - start < 1.0
    assert "8000 × 8000" in message and "megapixels" in message


def test_a_decompression_bomb_is_refused_even_with_a_raised_pixel_limit():
    data = bilevel_png(20000, 20000)  # 400 megapixels: over Pillow's own bomb limit
    start = time.perf_counter()
    message = refusal(data, max_pixels=10**12)
    assert f"{Image.MAX_IMAGE_PIXELS / 1e6:.3g} megapixels" in message
    assert time.perf_counter() - start < 1.0


def test_an_image_just_over_pillows_warning_limit_is_refused_at_its_limit():
    side = int(Image.MAX_IMAGE_PIXELS**0.5) + 1  # between Pillow's warning and error limits
    with pytest.warns(Image.DecompressionBombWarning):
        message = refusal(bilevel_png(side, side), max_pixels=10**12)
    assert f"{side} × {side}" in message


def test_a_missing_path_is_refused(tmp_path):
    assert "no file" in refusal(tmp_path / "missing.png")


def test_an_unknown_source_type_is_refused():
    assert "cannot read an image" in refusal(12345)


# ---------------------------------------------------------------- sources


def test_path_bytes_and_file_like_give_the_same_image(tmp_path):
    data = encode(quadrants(), "PNG")
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    results = [read_image(source) for source in (data, path, str(path), io.BytesIO(data))]
    arrays = [np.asarray(result) for result in results]
    assert all(np.array_equal(arrays[0], other) for other in arrays[1:])


def test_a_file_like_object_is_read_from_its_start():
    stream = io.BytesIO(encode(quadrants(), "PNG"))
    stream.read()  # left at the end, as by an earlier reader
    assert read_image(stream).size == (40, 30)


def test_read_bytes_returns_the_raw_bytes():
    data = encode(quadrants(), "PNG")
    assert images.read_bytes(io.BytesIO(data)) == data


# ---------------------------------------------------------------- digest and samples


def test_image_digest_is_stable_and_differs_for_different_bytes():
    data = encode(quadrants(), "PNG")
    assert image_digest(data) == image_digest(bytes(data))
    assert len(image_digest(data)) == 64
    assert image_digest(data) != image_digest(data + b"\x00")


def test_sample_images_lists_the_shipped_photos():
    samples = sample_images()
    assert {"chelsea", "coffee", "astronaut", "rocket", "camera"} <= samples.keys()
    assert all(path.parent == images.SAMPLES_DIR for path in samples.values())


def test_sample_images_excludes_masks():
    assert not any(name.endswith(".mask") for name in sample_images())
    assert not any(path.name.endswith(".mask.png") for path in sample_images().values())


@pytest.mark.parametrize("name", sorted(sample_images()))
def test_every_sample_reads_through_read_image(name):
    result = read_image(sample_images()[name])
    assert result.mode == "RGB" and min(result.size) >= 64


def test_samples_and_masks_are_found_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "SAMPLES_DIR", tmp_path)
    for name in ("shapes_circle.png", "shapes_circle.mask.png", "cat.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list(sample_images()) == ["cat", "shapes_circle"]
    assert sample_mask("shapes_circle") == tmp_path / "shapes_circle.mask.png"
    assert sample_mask("cat") is None


def test_sample_mask_ignores_names_that_leave_the_samples_folder():
    assert sample_mask("../samples/chelsea") is None
    assert sample_mask("") is None
