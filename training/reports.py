"""Measure a trained learner and write the reports: plots and the top-losses table."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from fastai.data.core import TfmdDL
from fastai.interpret import ClassificationInterpretation
from fastai.learner import Learner
from matplotlib.figure import Figure

from formats.labels import TOP_LOSSES_FILE, TopLoss, write_top_losses
from training.data import LabelledImages, Split


@dataclass
class Evaluation:
    """How the learner does on the validation set."""

    accuracy: float
    per_class_accuracy: dict[str, float]
    wrong: int  # validation images predicted as another class
    count: int  # validation images

    @property
    def error_rate(self) -> float:
        """The share of validation images predicted wrong."""
        return self.wrong / self.count if self.count else 0.0


def save_figure(path: Path, figure: Figure | None = None) -> Path:
    """Write `figure` (by default the current one) to `path` as PNG and close every figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (figure or plt.gcf()).savefig(path, format="png", bbox_inches="tight")
    plt.close("all")
    return path


class LossCurves:
    """One panel per training stage, each with fastai's own loss plot of that stage."""

    def __init__(self, learn: Learner, stages: int):
        self.learn = learn
        self.figure, axes = plt.subplots(1, stages, figsize=(6 * stages, 4), squeeze=False)
        self.axes = list(axes[0])

    def add(self, stage: str) -> None:
        """Plot the stage the learner has just finished (each fit resets the recorder)."""
        ax = self.axes.pop(0)
        recorder = self.learn.recorder
        # fastai skips the first 5 batches, the noisiest; a short run has few to spare
        recorder.plot_loss(skip_start=min(5, len(recorder.losses) // 10), ax=ax)
        for line in ax.get_lines():  # one or two epochs give single validation points
            line.set_marker("o" if len(line.get_xdata()) < 10 else "")
        ax.set_title(f"learning curve: {stage}")

    def save(self, path: Path) -> Path:
        """Write the figure to `path` as PNG."""
        plt.figure(self.figure.number)
        return save_figure(path)


def validation_predictions(learn: Learner) -> Predictions:
    """The learner's predictions for every validation image, in the order of `dls.valid`."""
    return _predictions(learn, learn.dls.valid.new(shuffle=False, drop_last=False))


def write_reports(
    learn: Learner, images: LabelledImages, split: Split, reports: Path, valid: Predictions
) -> dict[str, str]:
    """Write the confusion matrix and top losses (plot and table); return their paths."""
    # the training images pass through the validation transforms (no augmentation), so
    # their losses say how the final model sees them; extras (user feedback) stay out of
    # the table, which names files inside the data folder only
    own_train = [images.items[i] for i in split.train if i < len(images.items)]
    rows = _top_loss_rows(learn, valid, "valid", images.root)
    if own_train:
        train = _predictions(learn, learn.dls.test_dl(own_train, with_labels=True))
        rows += _top_loss_rows(learn, train, "train", images.root)

    paths = {
        "confusion_matrix": reports / "confusion_matrix.png",
        "top_losses": reports / "top_losses.png",
        "top_losses_csv": reports / TOP_LOSSES_FILE,
    }
    interp = ClassificationInterpretation(learn, valid.dl, valid.losses)
    interp.plot_confusion_matrix(figsize=(4, 4))
    save_figure(paths["confusion_matrix"])
    interp.plot_top_losses(min(9, len(valid.losses)), figsize=(8, 8))
    save_figure(paths["top_losses"])
    write_top_losses(paths["top_losses_csv"], rows)
    return {name: str(path) for name, path in paths.items()}


@dataclass
class Predictions:
    """A learner's predictions over one DataLoader, with the losses."""

    dl: TfmdDL  # the loader the predictions came from
    probabilities: torch.Tensor
    targets: torch.Tensor
    decoded: torch.Tensor
    losses: torch.Tensor


def _predictions(learn: Learner, dl) -> Predictions:
    probabilities, targets, decoded, losses = learn.get_preds(
        dl=dl, with_decoded=True, with_loss=True
    )
    return Predictions(dl, probabilities, targets, decoded, losses)


def _top_loss_rows(learn: Learner, preds: Predictions, split: str, root: Path) -> list[TopLoss]:
    vocab = learn.dls.vocab
    rows = []
    for (path, _), target, decoded, probabilities, loss in zip(
        preds.dl.items,
        preds.targets,
        preds.decoded,
        preds.probabilities,
        preds.losses,
        strict=True,
    ):
        rows.append(
            TopLoss(
                # relative to the data folder, the way the review page and cleaned.csv name files
                file=Path(os.path.relpath(path, root.absolute())).as_posix(),
                split=split,
                actual=vocab[int(target)],
                predicted=vocab[int(decoded)],
                probability=round(float(probabilities[int(decoded)]), 6),
                loss=round(float(loss), 6),
            )
        )
    return rows


def evaluate(valid: Predictions, vocab) -> Evaluation:
    """Accuracy overall and per class, and the count of wrong answers, of `valid`."""
    correct = valid.decoded == valid.targets
    per_class = {
        name: float(correct[valid.targets == index].float().mean())
        for index, name in enumerate(vocab)
    }
    return Evaluation(
        accuracy=float(correct.float().mean()),
        per_class_accuracy=per_class,
        wrong=int((~correct).sum()),
        count=len(correct),
    )
