"""Train and export a tiny but real fastai classifier on synthetic pictures (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
import numpy as np
from fastai.callback.progress import ProgressCallback
from fastai.layers import ConvLayer, Flatten
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastai.vision.augment import Resize
from fastai.vision.data import ImageDataLoaders
from torch import nn

from .imagemaker import CLASSES, make_picture


def write_dataset(root: Path, per_class: int = 48, seed: int = 0) -> Path:
    """Class folders of PNG pictures of varied sizes under `root`."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            size = tuple(int(side) for side in rng.integers(40, 90, 2))
            make_picture(label, rng, size).save(folder / f"{index}.png")
    return root


def tiny_cnn(classes: int) -> nn.Module:
    """Two fastai ConvLayers, 2x2 pooling (it keeps where things are) and a linear head."""
    return nn.Sequential(
        ConvLayer(3, 16, stride=2, norm_type=None),
        ConvLayer(16, 32, stride=2, norm_type=None),
        nn.AdaptiveAvgPool2d(2),
        Flatten(),
        nn.Linear(32 * 4, classes),
    )


def train_tiny_model(data: Path, export_path: Path, epochs: int = 4) -> Learner:
    """Train on `data` (class folders) and export to `export_path`; returns the learner."""
    # fastai's shuffling draws from Python's global random, not torch's: seed them all so the
    # model is the same whichever test trained it first, and a CI failure reproduces here
    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_folder(
        data, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=16, num_workers=0
    )
    learn = Learner(
        dls, tiny_cnn(len(dls.vocab)), loss_func=CrossEntropyLossFlat(), metrics=accuracy
    )
    learn.remove_cb(ProgressCallback)
    learn.fit_one_cycle(epochs, 1e-2)
    learn.add_cb(ProgressCallback())
    learn.export(export_path)
    return learn
