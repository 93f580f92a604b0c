"""Synthetic photos for the tests: which class a picture is depends on where its colours are.

A "mod" picture is red above blue, a "rocker" picture blue above red, so the model has to look
at the layout (a sideways photo confuses it), not merely at the colours.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CLASSES = ("mod", "rocker")
RED, BLUE = (220, 40, 40), (40, 60, 220)


def make_picture(
    label: str, rng: np.random.Generator, size: tuple[int, int] = (48, 64)
) -> Image.Image:
    """A noisy two-band picture of class `label`, `size` = (width, height)."""
    width, height = size
    top, bottom = (RED, BLUE) if label == "mod" else (BLUE, RED)
    pixels = np.empty((height, width, 3), dtype=np.float64)
    split = height // 2 + int(rng.integers(-height // 8, height // 8 + 1))
    pixels[:split] = top
    pixels[split:] = bottom
    pixels += rng.normal(0, 25, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    """The bytes of `image` saved in `format`."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()
