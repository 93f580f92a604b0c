"""The agreement check: a model is served in reduced precision, or by an exported runtime, only if
its answers stay those of the learner's own model in eager fp32.

On every check image the probabilities must stay within BOUND of fp32, and the top label must
be the same wherever fp32's top label leads the second by more than MARGIN (a closer call is a
coin toss at any precision). With both, no answer a user sees changes by more than 2 points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from formats.examples import list_examples

from .decode import decode_image
from .errors import ImageError

BOUND = 0.02  # the largest probability difference from fp32 (the draft decode's bound too)
MARGIN = 0.05  # fp32's lead of the top label over the second above which the label must hold
MAX_EXAMPLES = 48  # example photos checked at most (they are the model's validation images)
SYNTHETIC_SIDES = ((64, 64), (320, 240), (240, 320))


@dataclass(frozen=True)
class Agreement:
    """How a candidate's probabilities compare with fp32's on the same images."""

    images: int
    largest_difference: float
    decided: int  # images whose fp32 margin exceeds MARGIN
    label_changes: int  # of those, how many got another top label

    @property
    def passed(self) -> bool:
        """True when every difference is within BOUND and no decided label changed."""
        return self.largest_difference <= BOUND and self.label_changes == 0

    def describe(self) -> str:
        """One clause for the log: what was compared and how far apart the answers were."""
        changes = (
            f", {self.label_changes} of {self.decided} clear top labels changed"
            if self.label_changes
            else ""
        )
        return (
            f"probabilities differ from fp32 by {self.largest_difference:.4f} at most on "
            f"{self.images} check images (bound {BOUND}){changes}"
        )


def compare(reference: torch.Tensor, candidate: torch.Tensor) -> Agreement:
    """Compare rows of probabilities (one row per image) with fp32's `reference` rows."""
    reference, candidate = reference.float(), candidate.float()
    top2 = reference.topk(min(2, reference.shape[1]), dim=1).values
    margin = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
    decided = margin > MARGIN
    changed = reference.argmax(dim=1) != candidate.argmax(dim=1)
    return Agreement(
        images=len(reference),
        largest_difference=float((reference - candidate).abs().max()) if len(reference) else 0.0,
        decided=int(decided.sum()),
        label_changes=int((changed & decided).sum()),
    )


def synthetic_images(seed: int = 0) -> list[Image.Image]:
    """The warm-up pictures: a black one, smooth colour gradients and noise, of several shapes."""
    rng = np.random.default_rng(seed)
    images = [Image.new("RGB", SYNTHETIC_SIDES[0])]
    for width, height in SYNTHETIC_SIDES[1:]:
        ys, xs = np.mgrid[0:height, 0:width]
        gradient = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) % 256], axis=-1)
        images.append(Image.fromarray(gradient.astype(np.uint8)))
        noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        images.append(Image.fromarray(noise))
    return images


def check_images(model_path: Path, draft_size: int | None, max_pixels: int) -> list[Image.Image]:
    """The warm-up pictures plus the model's example photos (its validation images), decoded as
    uploads are; examples that cannot be read are skipped."""
    images = synthetic_images()
    examples = [path for paths in list_examples(model_path).values() for path in paths]
    for path in examples[:MAX_EXAMPLES]:
        try:
            images.append(
                decode_image(path.read_bytes(), draft_size=draft_size, max_pixels=max_pixels)
            )
        except (OSError, ImageError):
            continue
    return images
