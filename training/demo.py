"""The digits demo: scikit-learn's bundled handwritten digits written out as class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

# three digits that look unlike each other, so a small network learns them in a minute
DEMO_DIGITS = ("0", "1", "7")


def write_digits(
    dest: Path, digits: tuple[str, ...] = DEMO_DIGITS, size: int = 32, per_class: int | None = None
) -> int:
    """Write `digits` as `dest/<digit>/<n>.png` (8x8 scans upscaled to `size`); return the count.

    `per_class` caps the images of each digit (about 180 each by default).
    """
    bunch = load_digits()
    count = 0
    for digit in digits:
        folder = dest / digit
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(bunch.target == int(digit))[:per_class]:
            # the scans hold 17 grey levels, 0 (paper) to 16 (ink): dark ink on white paper
            pixels = (255 - bunch.images[index] * 255 / 16).astype(np.uint8)
            image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)
            image.save(folder / f"{index:04d}.png")
            count += 1
    return count
