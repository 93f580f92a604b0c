"""Never throw away the served model: a new one replaces it only when it is not worse.

`fit` writes each new model, its card and examples to MODELS/candidate/ first. Then:

- nothing is served yet (no MODELS/export.pkl): the new model is promoted;
- the served model knows the same classes: it classifies the new model's validation images
  (the serving path: its own transforms, `Classifier`), and the new model is **worse** when it
  gets more of those same images wrong. A worse model stays in MODELS/candidate/ unless `--force`
  (or `train.py promote` later); a tie or better is promoted;
- the served model knows other classes, or cannot be loaded: the two cannot be compared on the
  same images, so the new model is promoted, and both error rates are printed (the served one
  from its card, measured on its own validation set).

Promoting moves the served model (export.pkl, export.json, examples/) to MODELS/previous/,
replacing whatever was there (one model deep: each export is tens of MB), then moves the
candidate into place, its card first and export.pkl last, each in one step.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from classifier.errors import ModelLoadError
from formats.atomic import move_atomically, replace_atomically
from formats.examples import examples_folder
from formats.modelcard import CardError, card_path, read_card
from training.data import Item

CANDIDATE = "candidate"
PREVIOUS = "previous"
MODEL_FILE = "export.pkl"
BATCH = 64  # images per forward pass when the served model is measured


def served_path(models: Path) -> Path:
    """The model the app serves from `models`: models/export.pkl."""
    return models / MODEL_FILE


def candidate_path(models: Path) -> Path:
    """Where a new model waits until it is promoted: models/candidate/export.pkl."""
    return models / CANDIDATE / MODEL_FILE


def previous_path(models: Path) -> Path:
    """Where the model that was served before the last promotion is kept."""
    return models / PREVIOUS / MODEL_FILE


@dataclass
class Comparison:
    """The served model against a new one."""

    new_error: float
    images: int  # the new model's validation images
    served_error: float | None = None  # None: nothing served, or its error is unknown
    same_images: bool = False  # served_error was measured on the new validation images
    served_wrong: int = 0
    new_wrong: int = 0
    not_compared: str | None = None  # why the two were not measured on the same images
    nothing_served: bool = False

    @property
    def worse(self) -> bool:
        """The new model gets more of the same validation images wrong than the served one."""
        return self.same_images and self.new_wrong > self.served_wrong

    def lines(self) -> list[str]:
        """Both error rates side by side, in words."""
        if self.nothing_served:
            return []
        new = f"new model {self.new_error:.1%}"
        if self.same_images:
            return [
                f"validation error on the same {self.images} images: "
                f"served model {self.served_error:.1%}, {new}"
            ]
        served = (
            "unknown" if self.served_error is None else f"{self.served_error:.1%} on its own images"
        )
        return [f"validation error: served model {served}, {new} ({self.not_compared})"]


def compare_with_served(
    models: Path,
    classes: Sequence[str],
    new_wrong: int,
    valid: Sequence[Item],
    device: torch.device,
) -> Comparison:
    """Measure the served model on the new model's validation images, when it can be."""
    count = len(valid)
    comparison = Comparison(
        new_error=new_wrong / count if count else 0.0, images=count, new_wrong=new_wrong
    )
    served = served_path(models)
    if not served.is_file():
        comparison.nothing_served = True
        return comparison
    try:
        outcome = served_mistakes(served, classes, valid, device)
    except ModelLoadError as error:
        outcome = f"the served model could not be loaded: {error}"
    except Exception as error:  # noqa: BLE001 - a model made elsewhere can fail in any way,
        # and the model just trained must not be lost for it
        outcome = (
            f"the served model could not classify these images ({type(error).__name__}: {error})"
        )
    if isinstance(outcome, str):
        comparison.not_compared = outcome
        comparison.served_error = _card_error_rate(served)
    else:
        comparison.same_images = True
        comparison.served_wrong = outcome
        comparison.served_error = outcome / count if count else 0.0
    return comparison


def served_mistakes(
    path: Path, classes: Sequence[str], valid: Sequence[Item], device: torch.device
) -> int | str:
    """How many of `valid` the export at `path` gets wrong, or why it cannot be asked.

    It is loaded and checked as the app loads it, and classifies through the app's own path.
    """
    from fastai.vision.core import PILImage

    from classifier.integrity import read_checked
    from classifier.loading import load_export
    from classifier.predictor import Classifier

    # no size cap of its own (the app decides what it serves): the file's own size
    learner = load_export(path, read_checked(path, max_bytes=path.stat().st_size).data)
    known = [str(label) for label in learner.dls.vocab]
    if sorted(known) != sorted(classes):
        return f"the served model knows other classes: {', '.join(known)}"
    model = Classifier(learner, device, path, channels_last=False)
    wrong = 0
    for chunk in _chunks(valid, BATCH):
        items = [model.preprocess(PILImage.create(image)) for image, _ in chunk]
        answers = model.predict_batch(items)
        wrong += sum(
            answer.label != label for answer, (_, label) in zip(answers, chunk, strict=True)
        )
    return wrong


def promote(models: Path) -> bool:
    """Serve the candidate: the served model moves to previous/. True if one was served."""
    candidate = candidate_path(models)
    served = served_path(models)
    had_served = served.is_file()
    if had_served:
        _keep_as_previous(models)
    candidate_card = card_path(candidate)
    if candidate_card.is_file():
        move_atomically(candidate_card, card_path(served))
    else:
        card_path(served).unlink(missing_ok=True)  # a card of the old model would be stale
    shutil.rmtree(examples_folder(served), ignore_errors=True)
    if examples_folder(candidate).is_dir():
        examples_folder(candidate).rename(examples_folder(served))
    move_atomically(candidate, served)
    shutil.rmtree(candidate.parent, ignore_errors=True)
    return had_served


def _keep_as_previous(models: Path) -> None:
    """Copy the served model, its card and examples to previous/, replacing what was there."""
    served = served_path(models)
    staging = models / f".{PREVIOUS}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    kept = staging / MODEL_FILE
    try:
        os.link(served, kept)  # the same bytes under a second name: no copy, no extra space
    except OSError:
        replace_atomically(kept, lambda partial: shutil.copyfile(served, partial))
    if card_path(served).is_file():
        shutil.copyfile(card_path(served), card_path(kept))
    if examples_folder(served).is_dir():
        shutil.copytree(examples_folder(served), examples_folder(kept))
    shutil.rmtree(models / PREVIOUS, ignore_errors=True)
    staging.rename(models / PREVIOUS)


def _card_error_rate(model: Path) -> float | None:
    """The error rate the model's card records, if it can be read."""
    try:
        card = read_card(model)
    except CardError:
        return None
    return None if card is None else card.error_rate


def _chunks(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
