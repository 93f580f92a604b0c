"""Find the labelled images, check there are enough, split them and build fastai DataLoaders."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import IndexSplitter, ItemGetter, TrainTestSplitter
from fastai.vision.augment import RandomResizedCrop, Resize, aug_transforms
from fastai.vision.data import ImageBlock
from fasttransform.transform import Transform

from formats.labels import LabelsError, labels_from_folders, read_labels_csv
from training.errors import InputError
from training.verify import app_max_pixels, unusable_images

# an item is a plain (absolute path, label) tuple, read with fastai's ItemGetter: the
# getters are pickled into export.pkl, and fastai's load wherever fastai does, whereas a
# helper from this package would make application.py need the training code
Item = tuple[Path, str]

# the augmentations --augment offers, in the words the model card records
AUGMENTATIONS = {
    "standard": "random crops of at least half of each image, flips, rotation up to 10 degrees, "
    "zoom up to 1.1x, lighting and perspective warp (the lesson's aug_transforms)",
    "light": "rotation up to 10 degrees, zoom up to 1.1x and lighting; no flips, crops or warp",
    "none": "none: each image is only resized",
}


@dataclass
class LabelledImages:
    """The images to learn from: the data folder's own, then the training-only extras."""

    root: Path
    items: list[Item]
    extras: list[Item] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """The class names, sorted, as fastai's Categorize orders them."""
        return sorted({label for _, label in self.items})


@dataclass
class Split:
    """Indices into `LabelledImages.items + extras`: extras are always in `train`."""

    train: list[int]
    valid: list[int]


def images_from_folders(root: Path) -> list[Item]:
    """Every image under `root/<class>/`, labelled by its top folder (formats.labels)."""
    _require_folder(root, "data folder")
    return [
        ((root / fname).absolute(), label) for fname, label in labels_from_folders(root).items()
    ]


def images_from_labels(root: Path, labels_file: Path) -> list[Item]:
    """The images listed in `labels_file` (columns fname,label; fname relative to `root`)."""
    _require_folder(root, "data folder")
    if not labels_file.is_file():
        raise InputError(
            f"labels file {labels_file} not found: write it with `python train.py review "
            f"--data {root}` or leave out --labels to use the class folders"
        )
    try:
        labels = read_labels_csv(labels_file)
    except LabelsError as error:
        raise InputError(str(error)) from None
    if not labels:
        raise InputError(f"{labels_file} lists no images: add rows of fname,label to it")
    items = [((root / fname).absolute(), label) for fname, label in labels.items()]
    missing = [path for path, _ in items if not path.is_file()]
    if missing:
        raise InputError(
            f"{labels_file} names {len(missing)} file(s) missing from {root}, the first being "
            f"{missing[0].relative_to(root.absolute())}: restore them or delete their rows"
        )
    return items


def images_from_extras(folders: list[Path], classes: list[str]) -> list[Item]:
    """The images in each `folder/<class>/` (e.g. uploads/feedback), for training only."""
    items = []
    for root in folders:
        _require_folder(root, "extra folder")
        for fname, label in labels_from_folders(root).items():
            if label not in classes:
                raise InputError(
                    f"{root / label} is not one of the classes {', '.join(classes)}: "
                    "rename it after one of them or move it out of the way"
                )
            items.append(((root / fname).absolute(), label))
    return items


def check_images(images: LabelledImages, valid_pct: float) -> None:
    """Fail unless there are two classes, each big enough to split, and every image opens."""
    counts = Counter(label for _, label in images.items)
    if len(counts) < 2:
        found = f"only {next(iter(counts))!r}" if counts else "none"
        raise InputError(
            f"found {len(counts)} class with images in {images.root} ({found}): training needs "
            "at least two, one folder of images per class, e.g. mod/ and rocker/"
        )
    needed = minimum_class_size(valid_pct)
    small = sorted((n, label) for label, n in counts.items() if n < needed)
    if small:
        n, label = small[0]
        raise InputError(
            f"class {label!r} has {n} image(s), too few to split into training and validation: "
            f"add images until every class has at least {needed}"
        )
    paths = [path for path, _ in images.items + images.extras]
    unusable = unusable_images(paths, app_max_pixels())
    if unusable:
        first, why = next(iter(unusable.items()))
        raise InputError(
            f"{len(unusable)} image(s) cannot be opened or are too large for the app, the first "
            f"being {first} ({why}): delete them "
            "(`python train.py download` removes such images itself)"
        )


def minimum_class_size(valid_pct: float) -> int:
    """The fewest images a class needs so that both splits can have one of them."""
    return max(2, math.ceil(1 / valid_pct))


def split_images(images: LabelledImages, valid_pct: float, seed: int) -> Split:
    """A stratified random split of the data folder's images; extras go to training."""
    labels = [label for _, label in images.items]
    # sklearn's stratified split via fastai: every class lands in validation, so the
    # per-class accuracy in the model card is defined for each one
    splitter = TrainTestSplitter(test_size=valid_pct, random_state=seed, stratify=labels)
    train, valid = splitter(images.items)
    extras = range(len(images.items), len(images.items) + len(images.extras))
    split = Split(train=sorted(train) + list(extras), valid=sorted(valid))
    missing = set(labels) - {labels[i] for i in split.valid}
    if missing:
        raise InputError(
            f"class {sorted(missing)[0]!r} got no validation images: add images to it "
            "or raise --valid-pct"
        )
    return split


def augmentation_transforms(augment: str, size: int) -> tuple[Transform, list | None]:
    """The item and batch transforms of one of AUGMENTATIONS at `size` pixels."""
    if augment == "standard":
        return RandomResizedCrop(size, min_scale=0.5), aug_transforms()
    if augment == "light":
        # what a photo of the same thing could look like; a mirrored or cropped digit or
        # letter may not be the same class any more
        return Resize(size), aug_transforms(do_flip=False, max_warp=0)
    return Resize(size), None


def build_dataloaders(
    images: LabelledImages,
    split: Split,
    size: int,
    batch_size: int,
    augment: str,
    workers: int | None,
) -> DataLoaders:
    """fastai DataLoaders over `images`, resized to `size`, augmented as `augment` says."""
    item_tfms, batch_tfms = augmentation_transforms(augment, size)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=images.classes)),
        get_x=ItemGetter(0),
        get_y=ItemGetter(1),
        splitter=IndexSplitter(split.valid),
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
    )
    # fastai drops the last incomplete training batch: a batch larger than the training
    # set would leave no batch at all
    batch_size = max(1, min(batch_size, len(split.train)))
    extra = {} if workers is None else {"num_workers": workers}
    return block.dataloaders(images.items + images.extras, bs=batch_size, **extra)


def _require_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        raise InputError(
            f"{what} {path} not found: pass a folder with one subfolder of images per class"
        )


def image_counts(images: LabelledImages, split: Split) -> dict[str, dict[str, int]]:
    """Images per class in each part: `train` (the data folder's), `extra`, `valid`."""
    own = len(images.items)
    every = images.items + images.extras
    parts = {
        "train": [i for i in split.train if i < own],
        "extra": [i for i in split.train if i >= own],
        "valid": split.valid,
    }
    return {
        name: dict(sorted(Counter(every[i][1] for i in indices).items()))
        for name, indices in parts.items()
        if indices
    }


def file_list_sha256(images: LabelledImages, split: Split) -> str:
    """A fingerprint of what the model learned from: each image's part, label and path.

    Paths are relative to the data folder (extras too, with `..`), so the same folders in
    another place give the same fingerprint; the images' bytes are not read.
    """
    every = images.items + images.extras
    root = images.root.absolute()
    lines = sorted(
        f"{part}\t{every[i][1]}\t{Path(os.path.relpath(every[i][0], root)).as_posix()}\n"
        for part, indices in (("train", split.train), ("valid", split.valid))
        for i in indices
    )
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
