"""The two training commands end to end: lr-find, and fit with export, reports and card."""

from __future__ import annotations

import math
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import fastai
import matplotlib.pyplot as plt
import torch
from fastai.learner import Learner
from fastai.torch_core import default_device, set_seed
from matplotlib.figure import Figure
from PIL import Image

from formats.atomic import replace_atomically
from formats.examples import EXAMPLES_PER_CLASS, write_examples
from formats.modelcard import ModelCard, card_path, sha256_of, utc_now, write_card
from training.data import (
    AUGMENTATIONS,
    LabelledImages,
    Split,
    build_dataloaders,
    check_images,
    file_list_sha256,
    image_counts,
    images_from_extras,
    images_from_folders,
    images_from_labels,
    split_images,
)
from training.distributed import (
    across_processes,
    check_precision,
    continue_on_main_only,
    is_main_process,
    join_processes,
    on_its_own,
    process_count,
    same_on_every_process,
    training_device,
    use_precision,
)
from training.estimate import RunPlan, RunTimer, faster_settings
from training.learner import (
    LR_FIND_ITERATIONS,
    architecture_name,
    build_learner,
    choose_learning_rate,
    find_learning_rates,
    train_stages,
)
from training.promotion import Comparison, candidate_path, compare_with_served, promote, served_path
from training.reports import (
    Evaluation,
    LossCurves,
    Predictions,
    evaluate,
    save_figure,
    validation_predictions,
    write_reports,
)

# from scratch a network needs more, smaller steps than a pretrained one does to fit its head
# (measured on the digits: README, "Train your own")
EPOCHS = {"pretrained": 4, "scratch": 8}
BATCH_SIZE = {"pretrained": 64, "scratch": 32}
AUGMENT = {"pretrained": "standard", "scratch": "light"}


def _start(pretrained: bool) -> str:
    return "pretrained" if pretrained else "scratch"


@dataclass
class DataOptions:
    """Where the images are and how to feed them to the network.

    Batch size and augmentation left at None get the defaults for pretrained or from-scratch
    training (`BATCH_SIZE`, `AUGMENT`).
    """

    data: Path
    labels: Path | None = None
    extra: list[Path] = field(default_factory=list)
    arch: str = "resnet34"
    size: int = 224
    valid_pct: float = 0.2
    seed: int = 42
    pretrained: bool = True
    batch_size: int | None = None
    workers: int | None = None
    augment: str | None = None

    def __post_init__(self) -> None:
        start = _start(self.pretrained)
        self.batch_size = self.batch_size or BATCH_SIZE[start]
        self.augment = self.augment or AUGMENT[start]


@dataclass
class FitOptions:
    """How long and how fast to train, and where the results go.

    `lr` None: lr-find picks it (`choose_learning_rate`). `epochs` None: `EPOCHS`.
    """

    models: Path = Path("models")
    reports: Path = Path("reports")
    epochs: int | None = None
    lr: float | None = None
    unfreeze_epochs: int = 0
    lr_max: tuple[float, float] | None = None
    name: str | None = None
    demo: bool = False
    force: bool = False  # promote the new model even when it is worse than the served one
    lr_find_iterations: int = LR_FIND_ITERATIONS
    command: str | None = None  # the command line, for the card
    report: Callable[[str], object] = print  # where progress lines go
    precision: str = "fp32"  # or bf16, fp16: fastai's mixed precision, on a GPU


@dataclass
class FitResult:
    """What `fit_and_export` leaves behind, with the learner as it was at the end of training."""

    learner: Learner
    card: ModelCard
    export_path: Path  # models/export.pkl when promoted, else models/candidate/export.pkl
    card_path: Path
    comparison: Comparison
    promoted: bool
    guess: tuple[str, float]  # the largest validation class, and the error of always guessing it

    @property
    def learned_nothing(self) -> bool:
        """The model does no better than always answering the largest class."""
        return self.card.error_rate is not None and self.card.error_rate >= self.guess[1] - 1e-9


@dataclass
class _Prepared:
    images: LabelledImages
    split: Split


def _gather(options: DataOptions) -> _Prepared:
    """Gather, check and split the images."""
    if options.labels is None:
        items = images_from_folders(options.data)
    else:
        items = images_from_labels(options.data, options.labels)
    images = LabelledImages(root=options.data, items=items)
    images.extras = images_from_extras(options.extra, images.classes)
    check_images(images, options.valid_pct)
    return _Prepared(images, split_images(images, options.valid_pct, options.seed))


def _learner(
    options: DataOptions, prepared: _Prepared, learner_path: Path, precision: str = "fp32"
) -> Learner:
    """A fresh learner over the images: the same seed gives the same start every time."""
    set_seed(options.seed, reproducible=True)
    assert options.batch_size is not None and options.augment is not None  # __post_init__
    dls = build_dataloaders(
        prepared.images,
        prepared.split,
        options.size,
        options.batch_size,
        options.augment,
        options.workers,
    )
    learn = build_learner(dls, options.arch, options.pretrained, learner_path)
    use_precision(learn, precision)
    return learn


def _silent(line: str) -> None:
    """Where the other processes of `accelerate launch` report: nowhere, the main one speaks."""


def _on_cpu() -> bool:
    return default_device().type == "cpu"


def lr_find(
    options: DataOptions,
    reports: Path,
    iterations: int = 100,
    report: Callable[[str], object] = print,
) -> tuple[dict[str, float], Path]:
    """Run fastai's learning-rate finder; return its suggestions and the plot's path."""
    training_device()
    prepared = _gather(options)
    # lr_find saves and restores the weights under learn.path/models: keep that out of
    # the user's folders
    with tempfile.TemporaryDirectory() as scratch:
        learn = _learner(options, prepared, Path(scratch))
        plan = RunPlan(lr_find_batches=iterations)
        timer = RunTimer(plan, _on_cpu(), faster_settings(options.arch, options.size), report)
        with learn.added_cbs(timer):
            suggestions = find_learning_rates(learn, iterations)
    return suggestions, save_figure(reports / "lr_find.png")


def fit_and_export(options: DataOptions, fit: FitOptions) -> FitResult | None:
    """Train, export to models/candidate/, compare with the served model, promote if not worse.

    The reports go to REPORTS/ for a promoted model and to REPORTS/candidate/ for one that is
    not, so that they always describe the model whose card names them. Under `accelerate
    launch` every process runs the same lr-find on its own before they join, all train at the
    main one's rate, and only the main one goes on to compare, write and promote; the others
    return None.
    """
    started = time.monotonic()
    device = training_device()
    check_precision(fit.precision, device)
    processes = process_count()
    report = fit.report if is_main_process() else _silent
    prepared = _gather(options)
    epochs = fit.epochs or EPOCHS[_start(options.pretrained)]
    lr_plot: Figure | None = None
    suggestions: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        learn = _learner(options, prepared, Path(scratch), fit.precision)
        timer = _timer(learn, options, fit, epochs, prepared, report)
        if fit.lr is not None:
            lr, choice = fit.lr, "given with --lr"
            join_processes(device)
        else:
            with learn.added_cbs(timer), on_its_own():
                found = find_learning_rates(learn, fit.lr_find_iterations)
            lr_plot = plt.gcf()
            join_processes(device)
            # the same seed and images give every process the same curve; the main one's counts
            suggestions = same_on_every_process(found)
            lr, choice = choose_learning_rate(suggestions)
            report(f"learning rate {lr:.2g}: {choice}")
            # the rate found, from the same start as `fit --lr` with that rate would have
            learn = _learner(options, prepared, Path(scratch), fit.precision)
        lr_max = fit.lr_max or (lr / 200, lr / 2)  # fine_tune's own choice
        curves = LossCurves(learn, stages=2 if fit.unfreeze_epochs else 1)
        with learn.added_cbs(timer), across_processes(learn):
            train_stages(learn, epochs, lr, fit.unfreeze_epochs, lr_max, curves.add)
        learn.to_fp32()  # the export serves in whatever precision the app chooses
    if not continue_on_main_only():
        return None
    valid = validation_predictions(learn)
    evaluation = evaluate(valid, learn.dls.vocab)
    classes = [str(label) for label in learn.dls.vocab]
    comparison = compare_with_served(fit.models, classes, evaluation.wrong, valid.dl.items, device)
    promoting = comparison.nothing_served or not comparison.worse or fit.force
    reports = fit.reports if promoting else fit.reports / "candidate"
    if lr_plot is not None:
        save_figure(reports / "lr_find.png", lr_plot)
    losses_plot = curves.save(reports / "losses.png")
    report_paths = write_reports(learn, prepared.images, prepared.split, reports, valid)
    report_paths["losses"] = str(losses_plot)

    candidate = candidate_path(fit.models)
    shutil.rmtree(candidate.parent, ignore_errors=True)
    candidate.parent.mkdir(parents=True)
    learn.path = fit.models  # the scratch folder is gone; don't pickle a dangling path
    replace_atomically(candidate, lambda partial: learn.export(partial.absolute()))
    write_examples(candidate, _examples(valid, classes))
    card = _model_card(
        options,
        fit,
        prepared,
        evaluation,
        report_paths,
        candidate,
        Training(epochs, lr, lr_max, choice, suggestions, time.monotonic() - started),
    )
    card.processes, card.precision = processes, fit.precision
    write_card(candidate, card)
    export_path = served_path(fit.models) if promoting else candidate
    if promoting:
        promote(fit.models)
    return FitResult(
        learn,
        card,
        export_path,
        card_path(export_path),
        comparison,
        promoting,
        _largest_class(valid, classes),
    )


def _timer(
    learn: Learner,
    options: DataOptions,
    fit: FitOptions,
    epochs: int,
    prepared: _Prepared,
    report: Callable[[str], object],
) -> RunTimer:
    """A timer for the whole run: lr-find if it runs, each stage, validation and reports."""
    train, valid = len(learn.dls.train), len(learn.dls.valid)
    own_train = sum(1 for i in prepared.split.train if i < len(prepared.images.items))
    assert options.batch_size is not None
    plan = RunPlan(
        lr_find_batches=fit.lr_find_iterations if fit.lr is None else 0,
        train_batches=train * epochs,
        forward_batches=valid * (epochs + fit.unfreeze_epochs)
        + 2 * valid  # the reports, and the served model on the same images
        + math.ceil(own_train / options.batch_size),
    )
    if options.pretrained:
        plan.unfrozen_batches = train * fit.unfreeze_epochs
    else:  # from scratch every layer trains from the start: the second stage costs the same
        plan.train_batches += train * fit.unfreeze_epochs
    return RunTimer(plan, _on_cpu(), faster_settings(options.arch, options.size), report)


def _examples(valid: Predictions, classes: list[str]) -> dict[str, Iterable[Image.Image]]:
    """A few validation images per class for the page, those predicted right first."""
    ranked: dict[str, list[tuple[bool, Path]]] = {label: [] for label in classes}
    for (path, label), target, decoded in zip(
        valid.dl.items, valid.targets, valid.decoded, strict=True
    ):
        ranked[label].append((int(target) != int(decoded), Path(path)))
    return {
        label: _open_images(path for _, path in sorted(entries)[:EXAMPLES_PER_CLASS])
        for label, entries in ranked.items()
    }


def _open_images(paths: Iterator[Path]) -> Iterator[Image.Image]:
    for path in paths:
        with Image.open(path) as image:
            image.load()
            yield image.copy()


def _largest_class(valid: Predictions, classes: list[str]) -> tuple[str, float]:
    """The class with most validation images, and the error rate of always answering it."""
    counts = torch.bincount(valid.targets.flatten().long(), minlength=len(classes))
    index = int(counts.argmax())
    total = int(counts.sum())
    return classes[index], 1 - int(counts[index]) / total if total else 0.0


@dataclass
class Training:
    """What the run did, for the card."""

    epochs: int
    lr: float
    lr_max: tuple[float, float]
    choice: str
    suggestions: dict[str, float]
    seconds: float


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("fastai", "torch", "torchvision", "brighton-seafront"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _model_card(
    options: DataOptions,
    fit: FitOptions,
    prepared: _Prepared,
    evaluation: Evaluation,
    report_paths: dict[str, str],
    export_path: Path,
    training: Training,
) -> ModelCard:
    second_rates = list(training.lr_max) if fit.unfreeze_epochs else None
    if options.pretrained:
        stages: dict[str, int] = {"frozen": training.epochs, "unfrozen": fit.unfreeze_epochs}
        rates = {"frozen": training.lr, "unfrozen": second_rates}
    else:  # nothing is frozen: a second stage only spreads the rates over the layers
        stages = {"from scratch": training.epochs}
        rates = {"from scratch": training.lr}
        if fit.unfreeze_epochs:
            stages["discriminative"] = fit.unfreeze_epochs
            rates["discriminative"] = second_rates
    assert options.augment is not None
    return ModelCard(
        name=fit.name or options.data.absolute().name,
        classes=[str(label) for label in evaluation.per_class_accuracy],
        architecture=architecture_name(options.arch),
        pretrained=options.pretrained,
        image_size=options.size,
        train_count=len(prepared.split.train),
        valid_count=len(prepared.split.valid),
        error_rate=round(evaluation.error_rate, 6),
        accuracy=round(evaluation.accuracy, 6),
        per_class_accuracy={
            name: round(value, 6) for name, value in evaluation.per_class_accuracy.items()
        },
        epochs=stages,
        learning_rates=rates,
        fastai_version=fastai.__version__,
        torch_version=torch.__version__,
        created=utc_now(),
        sha256=sha256_of(export_path),
        demo=fit.demo,
        data=str(options.data),
        reports=report_paths,
        command=fit.command,
        seed=options.seed,
        labels=None if options.labels is None else str(options.labels),
        extra=[str(folder) for folder in options.extra],
        augmentation=f"{options.augment}: {AUGMENTATIONS[options.augment]}",
        image_counts=image_counts(prepared.images, prepared.split),
        files_sha256=file_list_sha256(prepared.images, prepared.split),
        lr_find={name: float(f"{value:.3g}") for name, value in training.suggestions.items()},
        learning_rate_choice=training.choice,
        training_seconds=round(training.seconds, 1),
        versions=_versions(),
    )
