"""Grad-CAM ("why?"): the hot area lies where the deciding region is, on the photo's own shape."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.vision.augment import Resize
from fastai.vision.data import ImageDataLoaders
from PIL import Image
from torch import nn

from classifier.explain import Explainer, ExplainError, last_conv_layer
from classifier.predictor import Classifier

SQUARE = 16  # side of the bright square, in pixels of a 64x64 photo


def square_pixels(
    corner: tuple[int, int] | None, rng: np.random.Generator, size: tuple[int, int] = (64, 64)
) -> np.ndarray:
    """Dark noise, with a bright square whose top-left is `corner` (class "square") or without."""
    width, height = size
    pixels = rng.normal(50, 20, (height, width, 3))
    if corner is not None:
        x, y = corner
        pixels[y : y + SQUARE, x : x + SQUARE] = 230
    return np.clip(pixels, 0, 255).astype(np.uint8)


def square_photo(
    corner: tuple[int, int] | None, rng: np.random.Generator, size: tuple[int, int] = (64, 64)
) -> Image.Image:
    """square_pixels as a photo."""
    return Image.fromarray(square_pixels(corner, rng, size), "RGB")


def small_cnn(classes: int = 2) -> nn.Module:
    """Three convolutions and global average pooling: it can tell *that* there is a square."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    )


def train_square_model(steps: int = 60, batch_size: int = 32) -> nn.Module:
    """Train small_cnn in plain torch to tell 32x32 noise with a square anywhere from noise."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = small_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one thread of a busy machine
    try:
        for _ in range(steps):
            labels = rng.integers(0, 2, batch_size)
            pixels = np.stack(
                [
                    square_pixels(tuple(rng.integers(0, 24, 2)) if label else None, rng, (32, 32))
                    for label in labels
                ]
            )
            # scaled to [0, 1] as fastai's IntToFloatTensor does
            batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
            loss = nn.functional.cross_entropy(model(batch), torch.from_numpy(labels))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    model.zero_grad(set_to_none=True)
    return model.eval()


def classifier_around(model: nn.Module, folder: Path) -> Classifier:
    """A served Classifier whose transforms are fastai's Resize(32) centre crop, as in training."""
    rng = np.random.default_rng(1)
    for label, corner in (("plain", None), ("square", (8, 8))):
        (folder / label).mkdir(parents=True)
        for index in range(4):  # the vocabulary comes from the training split: both classes
            square_photo(corner, rng).save(folder / label / f"{index}.png")
    dls = ImageDataLoaders.from_folder(
        folder, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=2, num_workers=0
    )
    learner = Learner(dls, model, loss_func=CrossEntropyLossFlat())
    return Classifier(learner, torch.device("cpu"), folder / "export.pkl")


@pytest.fixture(scope="module")
def square_classifier(tmp_path_factory) -> Classifier:
    """A real Classifier whose class is decided by one region: the bright square (~1 s)."""
    return classifier_around(train_square_model(), tmp_path_factory.mktemp("squares"))


@pytest.fixture(scope="module")
def explainer(square_classifier) -> Explainer:
    """An Explainer of the square model."""
    return Explainer(square_classifier)


def hot_spot(heat: np.ndarray) -> tuple[int, int]:
    """(x, y) of the hottest pixel."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (small_cnn(), lambda model: model[4]),
        (torchvision.models.resnet18(weights=None), lambda model: model.layer4[-1].conv2),
        (nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), lambda model: None),
    ],
    ids=["sequential", "resnet18", "no-convolution"],
)
def test_the_last_convolution_is_found_in_any_model(model, expected):
    assert last_conv_layer(model) is expected(model)


def test_the_square_model_has_learnt_its_task(square_classifier):
    rng = np.random.default_rng(7)
    photos = [square_photo((24, 24), rng), square_photo(None, rng)]
    answers = square_classifier.predict_batch([square_classifier.preprocess(p) for p in photos])
    assert [answer.label for answer in answers] == ["square", "plain"]


@pytest.mark.parametrize(
    "corner",
    [(2, 2), (46, 2), (2, 46), (46, 46), (24, 24)],
    ids=["top-left", "top-right", "bottom-left", "bottom-right", "centre"],
)
def test_the_hot_area_lies_on_the_square_that_decides_the_class(explainer, corner):
    photo = square_photo(corner, np.random.default_rng(3))
    heat = explainer.explain(photo, "square").heat(photo.size)
    x, y = corner
    spot_x, spot_y = hot_spot(heat)
    assert x - 2 <= spot_x < x + SQUARE + 2 and y - 2 <= spot_y < y + SQUARE + 2
    inside = heat[y : y + SQUARE, x : x + SQUARE].mean()
    assert inside > 3 * heat.mean()


def test_a_landscape_photo_is_explained_only_where_the_centre_crop_looked(explainer):
    photo = square_photo((40, 24), np.random.default_rng(4), size=(128, 64))
    explanation = explainer.explain(photo, "square")
    left, top, right, bottom = explanation.box
    assert (left, right) == pytest.approx((0.25, 0.75), abs=0.02) and (top, bottom) == (0, 1)
    heat = explanation.heat(photo.size)
    assert heat[:, :30].max() == 0 and heat[:, 98:].max() == 0
    spot_x, spot_y = hot_spot(heat)
    assert 38 <= spot_x < 58 and 22 <= spot_y < 42


@pytest.mark.parametrize("size", [(64, 64), (200, 50), (50, 200), (333, 101), (1, 1)])
def test_the_overlay_has_the_photos_size_and_so_its_aspect_ratio(explainer, size):
    photo = square_photo((0, 0), np.random.default_rng(5), size=size)
    overlay = explainer.explain(photo, "square").overlay(photo)
    assert overlay.size == photo.size and overlay.mode == "RGB"


def test_the_overlay_dims_the_parts_the_crop_cut_off_and_colours_the_rest(explainer):
    photo = square_photo((40, 24), np.random.default_rng(6), size=(128, 64))
    overlay = np.asarray(explainer.explain(photo, "square").overlay(photo), float)
    pixels = np.asarray(photo, float)
    unseen = np.concatenate([pixels[:, :30], pixels[:, 98:]], axis=1)
    unseen_overlay = np.concatenate([overlay[:, :30], overlay[:, 98:]], axis=1)
    assert unseen_overlay == pytest.approx(unseen * 0.35, abs=1.5)
    assert np.abs(overlay[:, 34:94] - pixels[:, 34:94]).mean() > 20


def test_explaining_leaves_the_served_model_as_it_was(square_classifier, explainer):
    photo = square_photo((30, 10), np.random.default_rng(8))
    before = square_classifier.predict_batch([square_classifier.preprocess(photo)])
    explainer.explain(photo, "square")
    explainer.explain(photo, "plain")
    assert square_classifier.predict_batch([square_classifier.preprocess(photo)]) == before
    served = square_classifier.model
    assert not served.training
    assert all(not module._forward_hooks for module in served.modules())
    assert all(parameter.grad is None for parameter in served.parameters())


def test_concurrent_explanations_each_explain_their_own_photo(explainer):
    corners = [(2, 2), (46, 46), (46, 2), (2, 46)] * 2
    spots: dict[int, tuple[int, int]] = {}

    def explain(index: int) -> None:
        photo = square_photo(corners[index], np.random.default_rng(index))
        spots[index] = hot_spot(explainer.explain(photo, "square").heat(photo.size))

    threads = [threading.Thread(target=explain, args=(index,)) for index in range(len(corners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, (x, y) in enumerate(corners):
        spot_x, spot_y = spots[index]
        assert x - 2 <= spot_x < x + SQUARE + 2 and y - 2 <= spot_y < y + SQUARE + 2


def test_a_model_without_convolutions_cannot_be_explained(tmp_path):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    explainer = Explainer(classifier_around(mlp, tmp_path))
    assert not explainer.available
    with pytest.raises(ExplainError, match="no convolutional layer"):
        explainer.explain(square_photo(None, np.random.default_rng(0)), "plain")
