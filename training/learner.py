"""Build a fastai vision learner, find a learning rate and train it in one or two stages."""

from __future__ import annotations

from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from urllib.error import URLError

import torch
from fastai.callback.schedule import minimum, slide, steep, valley
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy, error_rate
from fastai.vision.learner import model_meta, vision_learner
from torchvision.models import get_model_weights

from training.errors import InputError

# torchvision architectures fastai knows how to cut and split, by their torchvision names
ARCHITECTURES = {
    arch.__name__: arch for arch in model_meta if arch.__module__.startswith("torchvision")
}


class PretrainedWeightsError(InputError):
    """Pretrained weights could not be downloaded; the message says how to do without."""


def weights_cache() -> Path:
    """The folder where torch looks for downloaded weights before fetching them."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def build_learner(dls: DataLoaders, arch: str, pretrained: bool, path: Path) -> Learner:
    """A `vision_learner` for `arch` reporting accuracy and error rate, saving under `path`."""
    try:
        return vision_learner(
            dls,
            ARCHITECTURES[arch],
            pretrained=pretrained,
            metrics=[accuracy, error_rate],
            path=path,
        )
    except (URLError, HTTPException, OSError) as error:
        if not pretrained:
            raise
        weights_file = get_model_weights(arch).DEFAULT.url.rsplit("/", 1)[-1]
        reason = getattr(error, "reason", error)
        raise PretrainedWeightsError(
            f"could not download the pretrained {arch} weights ({reason}): put {weights_file} "
            f"into {weights_cache()} by hand, or train from scratch with --no-pretrained"
        ) from None


def find_learning_rates(learn: Learner, iterations: int = 100) -> dict[str, float]:
    """Run fastai's `lr_find` (it plots into a new figure) and return its suggestions by name."""
    suggestions = learn.lr_find(
        num_it=iterations, suggest_funcs=(minimum, steep, valley, slide), show_plot=True
    )
    return {name: float(value) for name, value in suggestions._asdict().items()}


def train_stages(
    learn: Learner,
    epochs: int,
    lr: float,
    unfreeze_epochs: int,
    lr_max: tuple[float, float],
    after_stage: Callable[[str], None],
) -> None:
    """`fit_one_cycle` on the head, then, if asked, on the whole network with `lr_max` spread.

    `after_stage` gets each stage's name while the recorder still holds that stage's losses.
    """
    learn.fit_one_cycle(epochs, lr)
    after_stage("frozen" if learn.pretrained else "training")
    if unfreeze_epochs:
        learn.unfreeze()
        # discriminative learning rates: the first layer group gets lr_max[0], the head
        # lr_max[1], as fastai's fine_tune does with slice()
        learn.fit_one_cycle(unfreeze_epochs, slice(*lr_max))
        after_stage("unfrozen")
