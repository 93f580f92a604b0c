"""Build a fastai vision learner, find a learning rate and train it in one or two stages."""

from __future__ import annotations

import difflib
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
# `--arch timm/resnet18` picks timm's resnet18 where torchvision has one of the same name (the
# Hugging Face Hub names timm's models so, e.g. timm/convnext_tiny.fb_in22k)
TIMM_PREFIX = "timm/"


def architecture(name: str) -> Callable | str:
    """What `vision_learner` takes for `--arch name`: a torchvision function, or a timm name.

    fastai builds a timm model when it is given a string, as the course's lesson 3 does with
    `vision_learner(dls, 'convnext_tiny')`. A torchvision name means torchvision's model; any
    other name, or one written `timm/NAME`, means timm's (a pretrained tag such as
    `convnext_tiny.fb_in22k` is allowed). Raises InputError for a name neither knows.
    """
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    import timm  # only for timm architectures: it takes a second to import

    timm_name = name.removeprefix(TIMM_PREFIX)
    if timm.is_model(timm_name):
        return timm_name
    known = [*ARCHITECTURES, *timm.list_models()]
    close = difflib.get_close_matches(timm_name, known, n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise InputError(
        f"unknown architecture {name!r}{hint}: use a torchvision one such as resnet34, or a timm "
        "one such as convnext_tiny (`python -c 'import timm; print(timm.list_models())'` lists "
        "them; timm/NAME picks timm's where both have NAME)"
    )


def architecture_name(name: str) -> str:
    """How the model card names `--arch name`: torchvision's names as they are, timm/NAME."""
    chosen = architecture(name)
    return name if callable(chosen) else TIMM_PREFIX + chosen


class PretrainedWeightsError(InputError):
    """Pretrained weights could not be downloaded; the message says how to do without."""


def weights_cache() -> Path:
    """The folder where torch looks for downloaded weights before fetching them."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def build_learner(dls: DataLoaders, arch: str, pretrained: bool, path: Path) -> Learner:
    """A `vision_learner` for `arch` reporting accuracy and error rate, saving under `path`."""
    chosen = architecture(arch)
    try:
        return vision_learner(
            dls, chosen, pretrained=pretrained, metrics=[accuracy, error_rate], path=path
        )
    except (URLError, HTTPException, OSError) as error:
        if not pretrained:
            raise
        if isinstance(chosen, str):
            raise PretrainedWeightsError(_timm_weights_advice(chosen, error)) from None
        weights_file = get_model_weights(arch).DEFAULT.url.rsplit("/", 1)[-1]
        reason = getattr(error, "reason", error)
        raise PretrainedWeightsError(
            f"could not download the pretrained {arch} weights ({reason}): put {weights_file} "
            f"into {weights_cache()} by hand, or train from scratch with --no-pretrained"
        ) from None


def _timm_weights_advice(name: str, error: Exception) -> str:
    """What to do when timm could not fetch `name`'s weights from the Hugging Face Hub."""
    from huggingface_hub.constants import HF_HUB_CACHE

    # the hub's own message is several sentences; its first says enough
    reason = str(error).split(". ")[0].strip().rstrip(".") or type(error).__name__
    return (
        f"could not download the pretrained timm {name} weights from the Hugging Face Hub "
        f"({reason}): run the same command once with internet access, which keeps them in "
        f"{HF_HUB_CACHE}, or train from scratch with --no-pretrained"
    )


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
