"""Check images as the app would read them: they decode, within the app's pixel limit."""

from __future__ import annotations

import warnings
from pathlib import Path

from fastcore.parallel import parallel
from PIL import Image, UnidentifiedImageError

# each check may hold one decoded image of up to the pixel limit: a few at a time, not one per core
VERIFY_WORKERS = 4


def app_max_pixels() -> int:
    """The app's pixel limit: SEAFRONT_MAX_PIXELS if set, else its default in webapp/settings.py."""
    from webapp.settings import from_env  # loads flask, so only when images are checked

    return int(from_env("MAX_PIXELS"))


def image_problem(path: Path, max_pixels: int) -> str | None:
    """Why `path` is no use for training, in a few words; None when it decodes within the limit."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                return (
                    f"{width}x{height} pixels, over the app's limit of {max_pixels:,} "
                    "(SEAFRONT_MAX_PIXELS)"
                )
            image.draft(image.mode, (32, 32))  # as fastai's verify_image: JPEGs at 1/8 scale
            image.load()
    except Image.DecompressionBombError:
        return "so many pixels that Pillow refuses it as a decompression bomb"
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except Exception as error:  # noqa: BLE001 - whatever a plugin raises, the file is unusable
        return f"does not decode ({type(error).__name__}: {error})"[:120]
    return None


def unusable_images(paths: list[Path], max_pixels: int) -> dict[Path, str]:
    """The images in `paths` that do not decode or exceed `max_pixels`, each with why."""
    with warnings.catch_warnings():
        # the size check above refuses bombs itself; Pillow's warning about them is only noise
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        problems = parallel(
            image_problem,
            paths,
            max_pixels=max_pixels,
            n_workers=VERIFY_WORKERS,
            threadpool=True,
            progress=False,
        )
    return {path: why for path, why in zip(paths, problems, strict=True) if why}
