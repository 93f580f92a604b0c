"""Build a fastai vision learner, find a learning rate and train it in one or two stages."""

from __future__ import annotations

import difflib
import functools
import math
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

# batches lr-find tries inside `fit` when no --lr is given (fastai's own default is 100)
LR_FIND_ITERATIONS = 30
# below this lr-find's suggestions mean its loss never fell; then fit trains at the fallback
LOWEST_LR = 1e-5
FALLBACK_LR = 1e-3

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


def find_learning_rates(
    learn: Learner, iterations: int = 100, stop_early: bool = True
) -> dict[str, float]:
    """Run fastai's `lr_find` (it plots into a new figure) and return its suggestions by name.

    Short runs (fewer than fastai's 100 batches) sweep a narrower range, 1e-6 to 1, where every
    suggestion falls in practice, at the same five batches per decade as fastai's default.
    `stop_early` False runs every batch even once the loss blows up: processes training together
    must stop at the same batch, and each one sees only its own loss. A suggestion that fastai
    cannot compute from the batches it ran (too few after a blow-up) is NaN.
    """
    start, end = (1e-7, 10.0) if iterations >= 100 else (1e-6, 1.0)
    suggestions = learn.lr_find(
        start_lr=start,
        end_lr=end,
        num_it=iterations,
        stop_div=stop_early,
        suggest_funcs=tuple(_or_nan(rule) for rule in (minimum, steep, valley, slide)),
        show_plot=True,
    )
    return {name: float(value) for name, value in suggestions._asdict().items()}


def _or_nan(rule: Callable) -> Callable:
    """fastai's suggestion `rule`, but NaN where its indexing runs past a short curve (slide
    looks 15 batches back, so an lr-find that stopped early made it raise IndexError)."""

    @functools.wraps(rule)
    def safe(lrs, losses, num_it):
        try:
            return rule(lrs, losses, num_it)
        except (IndexError, ValueError, RuntimeError):
            return math.nan, (math.nan, math.nan)

    return safe


def choose_learning_rate(suggestions: dict[str, float]) -> tuple[float, str]:
    """The rate `fit` trains with when no --lr is given, and the reason in words.

    The larger of lr-find's valley and minimum (a tenth of the rate at the lowest loss),
    rounded to two digits. A short lr-find is noisy, and from scratch either one alone can land
    an order of magnitude too low, where five epochs leave the model guessing; a tenth of the
    lowest point is still well below where the loss blows up. When both lie below
    `LOWEST_LR` (or neither could be computed), lr-find saw no loss fall at all, and
    `FALLBACK_LR` is used instead.
    """
    valley, lowest = suggestions.get("valley", math.nan), suggestions.get("minimum", math.nan)
    found = f"lr-find's valley {valley:.2g}, minimum {lowest:.2g}"
    value = max((rate for rate in (valley, lowest) if math.isfinite(rate)), default=0.0)
    if value < LOWEST_LR:
        return FALLBACK_LR, f"{found}: both too low to trust, so {FALLBACK_LR:g}"
    return float(f"{value:.2g}"), f"the larger of {found}"


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
