"""The two training commands end to end: lr-find, and fit with export, reports and card."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import fastai
import torch
from fastai.learner import Learner
from fastai.torch_core import set_seed

from formats.atomic import replace_atomically
from formats.modelcard import ModelCard, sha256_of, utc_now, write_card
from training.data import (
    LabelledImages,
    Split,
    build_dataloaders,
    check_images,
    images_from_extras,
    images_from_folders,
    images_from_labels,
    split_images,
)
from training.distributed import (
    across_processes,
    check_precision,
    continue_on_main_only,
    join_processes,
    process_count,
    training_device,
    use_precision,
)
from training.learner import (
    architecture_name,
    build_learner,
    find_learning_rates,
    train_stages,
)
from training.reports import Evaluation, LossCurves, save_figure, write_reports


@dataclass
class DataOptions:
    """Where the images are and how to feed them to the network."""

    data: Path
    labels: Path | None = None
    extra: list[Path] = field(default_factory=list)
    arch: str = "resnet34"
    size: int = 224
    valid_pct: float = 0.2
    seed: int = 42
    pretrained: bool = True
    batch_size: int = 64
    workers: int | None = None
    augment: bool = True


@dataclass
class FitOptions:
    """How long and how fast to train, and where the results go."""

    models: Path = Path("models")
    reports: Path = Path("reports")
    epochs: int = 4
    lr: float = 2e-3
    unfreeze_epochs: int = 0
    lr_max: tuple[float, float] | None = None
    name: str | None = None
    demo: bool = False
    precision: str = "fp32"  # or bf16, fp16: fastai's mixed precision, on a GPU


@dataclass
class FitResult:
    """What `fit_and_export` leaves behind, with the learner as it was at the end of training."""

    learner: Learner
    card: ModelCard
    export_path: Path
    card_path: Path


@dataclass
class _Prepared:
    images: LabelledImages
    split: Split
    learner: Learner


def _prepare(options: DataOptions, learner_path: Path) -> _Prepared:
    """Gather, check and split the images, and build the learner over them."""
    if options.labels is None:
        items = images_from_folders(options.data)
    else:
        items = images_from_labels(options.data, options.labels)
    images = LabelledImages(root=options.data, items=items)
    images.extras = images_from_extras(options.extra, images.classes)
    check_images(images, options.valid_pct)
    set_seed(options.seed, reproducible=True)
    split = split_images(images, options.valid_pct, options.seed)
    dls = build_dataloaders(
        images, split, options.size, options.batch_size, options.augment, options.workers
    )
    learner = build_learner(dls, options.arch, options.pretrained, learner_path)
    return _Prepared(images, split, learner)


def lr_find(
    options: DataOptions, reports: Path, iterations: int = 100
) -> tuple[dict[str, float], Path]:
    """Run fastai's learning-rate finder; return its suggestions and the plot's path."""
    training_device()
    # lr_find saves and restores the weights under learn.path/models: keep that out of
    # the user's folders
    with tempfile.TemporaryDirectory() as scratch:
        prepared = _prepare(options, Path(scratch))
        suggestions = find_learning_rates(prepared.learner, iterations)
    return suggestions, save_figure(reports / "lr_find.png")


def fit_and_export(options: DataOptions, fit: FitOptions) -> FitResult | None:
    """Train, export models/export.pkl, write the reports, then the model card.

    Under `accelerate launch` every process trains and only the main one writes anything; the
    others return None.
    """
    device = training_device()
    check_precision(fit.precision, device)
    processes = process_count()
    join_processes(device)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = _prepare(options, Path(scratch))
        learn = prepared.learner
        use_precision(learn, fit.precision)
        lr_max = fit.lr_max or (fit.lr / 200, fit.lr / 2)  # fine_tune's own choice
        curves = LossCurves(learn, stages=2 if fit.unfreeze_epochs else 1)
        with across_processes(learn):
            train_stages(learn, fit.epochs, fit.lr, fit.unfreeze_epochs, lr_max, curves.add)
        learn.to_fp32()  # the export serves in whatever precision the app chooses
    if not continue_on_main_only():
        return None
    losses_plot = curves.save(fit.reports / "losses.png")
    evaluation, report_paths = write_reports(learn, prepared.images, prepared.split, fit.reports)
    report_paths["losses"] = str(losses_plot)
    fit.models.mkdir(parents=True, exist_ok=True)
    export_path = fit.models / "export.pkl"
    learn.path = fit.models  # the scratch folder is gone; don't pickle a dangling path
    # a running app never reads half a file: the export appears in one step
    replace_atomically(export_path, lambda partial: learn.export(partial.absolute()))
    card = _model_card(options, fit, prepared, evaluation, report_paths, lr_max, export_path)
    card.processes, card.precision = processes, fit.precision
    written = write_card(export_path, card)
    return FitResult(learn, card, export_path, written)


def _model_card(
    options: DataOptions,
    fit: FitOptions,
    prepared: _Prepared,
    evaluation: Evaluation,
    report_paths: dict[str, str],
    lr_max: tuple[float, float],
    export_path: Path,
) -> ModelCard:
    return ModelCard(
        name=fit.name or options.data.absolute().name,
        classes=[str(label) for label in prepared.learner.dls.vocab],
        architecture=architecture_name(options.arch),
        pretrained=options.pretrained,
        image_size=options.size,
        train_count=len(prepared.split.train),
        valid_count=len(prepared.split.valid),
        error_rate=round(1 - evaluation.accuracy, 6),
        accuracy=round(evaluation.accuracy, 6),
        per_class_accuracy={
            name: round(value, 6) for name, value in evaluation.per_class_accuracy.items()
        },
        epochs={"frozen": fit.epochs, "unfrozen": fit.unfreeze_epochs},
        learning_rates={
            "frozen": fit.lr,
            "unfrozen": list(lr_max) if fit.unfreeze_epochs else None,
        },
        fastai_version=fastai.__version__,
        torch_version=torch.__version__,
        created=utc_now(),
        sha256=sha256_of(export_path),
        demo=fit.demo,
        data=str(options.data),
        reports=report_paths,
    )
