"""Grad-CAM: where in a photo the model looked for a class, as a heat map laid over the photo.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a convolutional layer's output by the
mean gradient of the class score with respect to it, sums the channels and keeps the positive
part. We use the last feature map before the classifier head (`explained_layer`): it still has
a spatial layout and already encodes whole objects.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from fastai.layers import AdaptiveConcatPool2d
from PIL import Image, ImageEnhance
from torch import nn

from .errors import ExplainError
from .predictor import Classifier

Box = tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the photo
WHOLE_PHOTO: Box = (0.0, 0.0, 1.0, 1.0)
COLOUR_MAP = "inferno"  # perceptually uniform and readable with colour-blindness; hot is bright
HEAT_OPACITY = 0.6
UNSEEN_BRIGHTNESS = 0.35  # the parts the model's crop cut off are dimmed


# Grad-CAM's map has the last convolution's resolution: 1x1 is one flat colour over the photo,
# 2x2 or 3x3 a few blocks that say little; from 4x4 on it picks out a part of the photo
MIN_MAP_SIDE = 4
NO_CONV_LAYER = (
    "This model has no convolutional layer (nn.Conv2d) whose map it classifies, so it cannot "
    "show where it looked; the prediction itself is unaffected."
)
# the layers fastai's create_head starts with when the body's output is a spatial map
POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, AdaptiveConcatPool2d)


def last_conv_layer(model: nn.Module) -> nn.Conv2d | None:
    """The last nn.Conv2d registered in `model`, or None when it has none."""
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    return convolutions[-1] if convolutions else None


def explained_layer(model: nn.Module) -> nn.Module | None:
    """The layer whose output Grad-CAM weighs: the map the head pools, else the last nn.Conv2d.

    A `vision_learner` model is (body, head), and a head that starts by pooling proves the
    body's output is that map, for torchvision and timm bodies alike. The last nn.Conv2d is
    not always it: in timm's convnext_tiny it is a depthwise 7x7 convolution inside the last
    block, before that block's mixing layers (nn.Linear) and its residual sum. A timm body that
    pools by itself (a ViT's, whose last nn.Conv2d is the patch embedding, its first layer)
    leaves no map to explain: None. Other models get their last nn.Conv2d.
    """
    if isinstance(model, nn.Sequential) and len(model) == 2:
        body, head = model
        if getattr(body, "needs_pool", None) is False:  # fastai's TimmBody of a ViT, say
            return None
        first = next(iter(head.children()), None) if isinstance(head, nn.Sequential) else None
        if isinstance(first, POOLING) and last_conv_layer(body) is not None:
            return body
    return last_conv_layer(model)


def feature_map_size(classifier: Classifier) -> tuple[int, int] | None:
    """(height, width) of the map Grad-CAM weighs (`explained_layer`) at the model's input size.

    Runs one forward pass: call it where the model's other torch work runs (the batcher thread).
    """
    model = getattr(classifier.model, "_orig_mod", classifier.model)
    layer = explained_layer(model)
    if layer is None:
        return None
    shapes: list[tuple[int, int]] = []
    handle = layer.register_forward_hook(
        lambda module, args, output: shapes.append((output.shape[-2], output.shape[-1]))
    )
    try:
        with torch.inference_mode():
            model(classifier.prepare_batch([classifier.preprocess(Image.new("RGB", (64, 64)))]))
    finally:
        handle.remove()
    return shapes[-1] if shapes else None


def why_not_explainable(classifier: Classifier) -> str:
    """Why Grad-CAM cannot show where this model looked, as a sentence, or '' when it can."""
    if explained_layer(classifier.model) is None:
        return NO_CONV_LAYER
    size = feature_map_size(classifier)
    if size is None or min(size) >= MIN_MAP_SIDE:
        return ""
    height, width = size
    seen = f" of its {classifier.input_size} px input" if classifier.input_size else ""
    return (
        f"This model's last feature map sees only a {height}x{width} grid{seen}, too "
        f"coarse to show where it looked (that needs at least {MIN_MAP_SIDE}x{MIN_MAP_SIDE}): "
        "train it on larger images (`python train.py fit --size 128`, say) to get a heat map; "
        "the prediction itself is unaffected."
    )


def grad_cam(model: nn.Module, inputs: torch.Tensor, target: int, layer: nn.Module) -> torch.Tensor:
    """Grad-CAM of class `target` for a batch of one: an (h, w) map in [0, 1] at `layer`'s size.

    Runs with gradients on and autocast off, whatever the calling thread had set, so the map is
    computed in float32; the model's parameters receive no gradients.
    """
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.enable_grad(), torch.autocast(inputs.device.type, enabled=False):
            logits = model(inputs)
            (gradient,) = torch.autograd.grad(logits[0, target], captured[-1])
    finally:
        handle.remove()
    activation = captured[-1].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))[0].float().cpu()
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def visible_box(preprocess: Callable[[Image.Image], torch.Tensor], size: tuple[int, int]) -> Box:
    """The part of a photo of `size` that the model's item transforms keep (a centre crop, say).

    Rather than reimplement each fastai resize method, we send a picture whose red and green
    channels encode each pixel's x and y through the same transforms and read back which
    coordinates arrived.
    """
    width, height = size
    xs = np.linspace(0, 255, width).round().astype(np.uint8)
    ys = np.linspace(0, 255, height).round().astype(np.uint8)
    coordinates = np.zeros((height, width, 3), dtype=np.uint8)
    coordinates[..., 0] = xs[np.newaxis, :]
    coordinates[..., 1] = ys[:, np.newaxis]
    seen = preprocess(Image.fromarray(coordinates, "RGB")).float() / 255
    # resampling blurs each edge inward by up to one pixel of the model's input: within that
    # distance of the photo's edge, the model saw up to the edge
    edge = max(2 / 255, 1 / min(seen.shape[-2:]))

    def snap(fraction: float) -> float:
        return 0.0 if fraction <= edge else 1.0 if fraction >= 1 - edge else fraction

    return (
        snap(float(seen[0].min())),
        snap(float(seen[1].min())),
        snap(float(seen[0].max())),
        snap(float(seen[1].max())),
    )


@dataclass(frozen=True)
class Explanation:
    """Where the model looked for `label`: `cam` in [0, 1] over the `box` part of the photo."""

    label: str
    cam: np.ndarray
    box: Box = WHOLE_PHOTO

    def heat(self, size: tuple[int, int]) -> np.ndarray:
        """The heat map for a photo of `size` (width, height): zero where the model did not look."""
        width, height = size
        left, top, right, bottom = self._pixels(size)
        heat = np.zeros((height, width), dtype=np.float32)
        resized = Image.fromarray(self.cam.astype(np.float32), "F").resize(
            (right - left, bottom - top), Image.Resampling.BILINEAR
        )
        heat[top:bottom, left:right] = np.clip(np.asarray(resized), 0.0, 1.0)
        return heat

    def overlay(self, photo: Image.Image) -> Image.Image:
        """`photo` with the heat map laid over the part the model saw, the rest dimmed."""
        from matplotlib import colormaps  # imported on first use: the server may never need it

        photo = photo.convert("RGB")
        left, top, right, bottom = self._pixels(photo.size)
        colours = colormaps[COLOUR_MAP](self.heat(photo.size))[..., :3]
        heat = Image.fromarray((colours * 255).round().astype(np.uint8), "RGB")
        result = ImageEnhance.Brightness(photo).enhance(UNSEEN_BRIGHTNESS)
        seen = (left, top, right, bottom)
        result.paste(Image.blend(photo.crop(seen), heat.crop(seen), HEAT_OPACITY), seen[:2])
        return result

    def _pixels(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The box in pixels of a photo of `size`, at least one pixel wide and high."""
        width, height = size
        left, top, right, bottom = self.box
        x0, y0 = int(round(left * width)), int(round(top * height))
        x1 = max(x0 + 1, min(width, int(round(right * width))))
        y1 = max(y0 + 1, min(height, int(round(bottom * height))))
        return min(x0, width - 1), min(y0, height - 1), x1, y1


class Explainer:
    """Grad-CAM for one Classifier, on a private float32 copy of its model, one photo at a time.

    The copy keeps hooks and gradients away from the model that the batcher thread serves with
    (and from any half precision it uses); the lock bounds the memory a backward pass needs.
    """

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        model = copy.deepcopy(getattr(classifier.model, "_orig_mod", classifier.model))
        model = model.float().eval()
        with torch.inference_mode(False):
            for parameter in model.parameters():
                if parameter.is_inference():  # a model loaded under inference_mode
                    parameter.data = parameter.data.clone()
                parameter.requires_grad_(True)  # a frozen body would otherwise give no gradient
        self._model = model
        self._layer = explained_layer(model)
        self._batch_pipeline = classifier.batch_transforms()
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """True when the model has a convolutional map to explain (see explained_layer)."""
        return self._layer is not None

    def explain(self, image: Image.Image, label: str) -> Explanation:
        """Where the model looked in RGB `image` for class `label` (ExplainError without a conv)."""
        if self._layer is None:
            raise ExplainError(NO_CONV_LAYER)
        target = self.classifier.classes.index(label)
        item = self.classifier.preprocess(image)
        with self._lock:
            batch = torch.stack([item]).to(self.classifier.device)
            inputs = self._batch_pipeline(batch).float()
            cam = grad_cam(self._model, inputs, target, self._layer)
        box = visible_box(self.classifier.preprocess, image.size)
        return Explanation(label=label, cam=cam.numpy(), box=box)
