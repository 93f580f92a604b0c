"""Decoding uploads: every accepted format and mode becomes an upright RGB image, in memory."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from classifier.decode import decode_image
from classifier.errors import (
    EmptyImageError,
    ImageTooLargeError,
    UnreadableImageError,
    UnsupportedImageError,
)

from .imagemaker import encode
from .support import MAX_PIXELS


def gradient(mode: str = "RGB", size=(60, 40)) -> Image.Image:
    """A picture with distinct rows and columns, so that rotation shows."""
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    rgb = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(rgb)


@pytest.mark.parametrize(
    ("format", "options"),
    [
        ("JPEG", {}),
        ("PNG", {}),
        ("WEBP", {}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_accepted_formats_decode_to_rgb(format, options):
    image = decode_image(encode(gradient(), format, **options), max_pixels=MAX_PIXELS)
    assert (image.mode, image.size) == ("RGB", (60, 40))


@pytest.mark.parametrize(
    ("mode", "format", "options"),
    [
        ("CMYK", "JPEG", {}),
        ("CMYK", "TIFF", {}),
        ("P", "PNG", {}),
        ("P", "PNG", {"transparency": 0}),
        ("L", "PNG", {}),
        ("LA", "PNG", {}),
        ("RGBA", "PNG", {}),
        ("1", "BMP", {}),
        ("RGBA", "WEBP", {}),
    ],
)
def test_every_mode_becomes_rgb(mode, format, options):
    source = gradient(mode)
    assert decode_image(encode(source, format, **options), max_pixels=MAX_PIXELS).mode == "RGB"


@pytest.mark.parametrize("format", ["PNG", "TIFF"])
def test_sixteen_bit_images_become_rgb(format):
    pixels = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 20
    assert (
        decode_image(encode(Image.fromarray(pixels), format), max_pixels=MAX_PIXELS).mode == "RGB"
    )


def test_sixteen_bit_grey_keeps_its_brightness():
    pixels = np.full((10, 10), 32768, dtype=np.uint16)  # half of 16-bit full scale
    decoded = decode_image(encode(Image.fromarray(pixels), "PNG"), max_pixels=MAX_PIXELS)
    assert np.asarray(decoded)[0, 0].tolist() == [128, 128, 128]


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data, max_pixels=MAX_PIXELS).getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [
        (6, Image.Transpose.ROTATE_90),  # phone held upright: stored turned, shown turned back
        (8, Image.Transpose.ROTATE_270),
        (3, Image.Transpose.ROTATE_180),
    ],
)
def test_exif_orientation_is_applied(orientation, stored):
    upright = gradient()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(upright.transpose(stored), "PNG", exif=exif)
    assert np.array_equal(
        np.asarray(decode_image(data, max_pixels=MAX_PIXELS)), np.asarray(upright)
    )


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", EmptyImageError, "empty"),
        (b"hello, this is text", UnreadableImageError, "could not be read"),
        (b"<html><body>hi</body></html>", UnreadableImageError, "could not be read"),
        (
            encode(gradient(size=(400, 300)), "JPEG")[:3000],
            UnreadableImageError,
            "damaged or trunc",
        ),
        (encode(gradient(), "PNG")[:120], UnreadableImageError, "damaged or truncated"),
        (encode(gradient(), "ICO"), UnsupportedImageError, "ICO image, which is not accepted"),
        (encode(gradient(), "PPM"), UnsupportedImageError, "not accepted"),
    ],
)
def test_bad_bytes_raise_a_sentence(data, error, words):
    with pytest.raises(error, match=words):
        decode_image(data, max_pixels=MAX_PIXELS)


def test_decompression_bomb_is_an_error_not_a_warning():
    bomb = encode(Image.new("1", (12_000, 12_000)), "PNG")  # a few kB, 144 megapixels
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="12000x12000"):
        decode_image(bomb, max_pixels=MAX_PIXELS)


def test_large_jpeg_is_decoded_at_reduced_scale_when_a_draft_size_is_given():
    photo = encode(gradient(size=(2000, 1500)), "JPEG")
    # 1/4 scale: both sides stay at least 224
    assert decode_image(photo, draft_size=224, max_pixels=MAX_PIXELS).size == (500, 375)
    assert decode_image(photo, max_pixels=MAX_PIXELS).size == (2000, 1500)
