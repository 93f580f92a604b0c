"""Example photos beside the model, for the page to offer as "try one of these".

`train.py fit` and `train.py demo` write a few validation images per class as
`models/examples/<class>/<n>.jpg` (small JPEGs, re-encoded, so without the originals' metadata);
the app lists them. This module is the only one that knows that layout.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from .atomic import write_atomically

EXAMPLES_FOLDER = "examples"
EXAMPLE_SIDE = 256  # pixels on the longer side: small to send, large enough to see
EXAMPLES_PER_CLASS = 3


def examples_folder(model_path: Path) -> Path:
    """Where a model's examples live: models/export.pkl -> models/examples/."""
    return Path(model_path).parent / EXAMPLES_FOLDER


def example_jpeg(image: Image.Image, side: int = EXAMPLE_SIDE) -> bytes:
    """`image` as a small JPEG with no metadata (no EXIF, no location)."""
    copy = image.convert("RGB")
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def write_examples(
    model_path: Path, images: dict[str, Iterable[Image.Image]], per_class: int = EXAMPLES_PER_CLASS
) -> list[Path]:
    """Replace the model's examples with up to `per_class` of each class's `images`."""
    folder = examples_folder(model_path)
    shutil.rmtree(folder, ignore_errors=True)
    written = []
    for label, pictures in images.items():
        if label in ("", ".", "..") or any(character in label for character in "/\\\0"):
            continue  # a class that cannot name a folder has no examples
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index, picture in zip(range(per_class), pictures, strict=False):
            written.append(write_atomically(folder / label / f"{index}.jpg", example_jpeg(picture)))
    return written


def list_examples(model_path: Path) -> dict[str, list[Path]]:
    """The examples by class, in name order; classes without any are left out."""
    folder = examples_folder(model_path)
    if not folder.is_dir():
        return {}
    found = {}
    for class_folder in sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        files = sorted(
            p
            for p in class_folder.glob("*.jpg")
            if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
        )
        if files:
            found[class_folder.name] = files
    return found
