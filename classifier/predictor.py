"""A loaded fastai export that predicts batches with the learner's own validation transforms."""

from __future__ import annotations

import copy
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from fastai.learner import Learner
from fastai.vision.core import PILImage
from fasttransform.transform import Pipeline
from PIL import Image

from .runtimes import Runtime, TorchRuntime

log = logging.getLogger(__name__)
VALID_SPLIT = 1  # fastai's split index of the validation set: no random augmentation
# A draft decode keeps every side at least this many times what the item transforms need, so
# that their own resize still shrinks the picture and sets its look. Measured on a briefly
# trained resnet18 at 224 px over 12 real photos of 640x480 to 4000x3000: at 1x (a 3000x2250
# photo decodes to 375x282) the probabilities moved by up to 0.018, near the 0.02 bound the
# tests hold served answers to; at 1.5x (750x563) by 0.006 at most, and 12 MP photos still
# decode at 1/8 scale.
DRAFT_MARGIN = 1.5


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: top label, its probability, every class's probability."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    device: str

    def as_dict(self) -> dict:
        """The JSON shape of the API."""
        return {
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "device": self.device,
        }


def _validation_copy(pipeline: Pipeline) -> Pipeline:
    """A private copy of a fastai pipeline that always applies the validation behaviour.

    fastai sets `split_idx` on the DataLoader's pipelines only while it iterates, and transforms
    keep per-call state (`before_call`), so serving uses copies pinned to the validation split.
    """
    pipeline = copy.deepcopy(pipeline)
    pipeline.split_idx = VALID_SPLIT
    return pipeline


def _input_size(pipeline: Pipeline) -> int | None:
    """The longest side the item transforms resize to (e.g. 224), or None without a resize."""
    sizes = [max(tfm.size) for tfm in pipeline.fs if isinstance(getattr(tfm, "size", None), tuple)]
    return max(sizes) if sizes else None


def draft_size_for(pipeline: Pipeline) -> int | None:
    """The shortest side a draft JPEG decode may give the item transforms, or None: no draft.

    What they need is the size they resize to (plus the margin that RandomResizedCrop resizes
    to before its validation centre crop, by fastai's own formula); DRAFT_MARGIN times that.
    """
    needs = []
    for tfm in pipeline.fs:
        size = getattr(tfm, "size", None)
        if isinstance(size, tuple):
            side = max(size)
            needs.append(side + math.ceil(side * getattr(tfm, "val_xtra", 0.0) / 8) * 8)
    return math.ceil(max(needs) * DRAFT_MARGIN) if needs else None


class Classifier:
    """A fastai Learner on one device; `preprocess` is thread-safe, `predict_batch` is not."""

    def __init__(
        self,
        learner: Learner,
        device: torch.device,
        path: Path,
        precision: torch.dtype | None = None,
        channels_last: bool = True,
    ):
        self.path = path
        self.device = device
        self.classes = [str(label) for label in learner.dls.vocab]
        learner.dls.to(device)
        self.model = learner.model.eval().to(device)
        self._item_pipeline = _validation_copy(learner.dls.valid.after_item)
        self._batch_pipeline = _validation_copy(learner.dls.valid.after_batch)
        self._activation = getattr(learner.loss_func, "activation", None) or (
            lambda logits: torch.softmax(logits, dim=-1)
        )
        self._per_thread = threading.local()
        self.input_size = _input_size(self._item_pipeline)
        # JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale that keeps every side at
        # least this long (Pillow's draft mode): a 12 MP photo becomes 500x375 for a 224 px
        # model, several times cheaper to decode than in full
        self.draft_size = draft_size_for(self._item_pipeline)
        # NHWC suits cuDNN's tensor-core kernels and oneDNN's CPU convolutions alike: a resnet34
        # forward on this project's 2-core CPU took 10-25% less time in it (README, "Performance").
        # Tried at the first batch, so that the thread that serves is the one that does it.
        self.channels_last = False
        self._try_layout = channels_last
        # what runs the model on prepared batches: eager torch until backend.py chooses
        self.runtime: Runtime = TorchRuntime(self.model, device, precision)

    @property
    def precision(self) -> torch.dtype | None:
        """The precision the model runs in (None: fp32)."""
        return self.runtime.precision

    @property
    def takes_channels_last(self) -> bool:
        """True when prepared batches are NHWC: the model runs so, and so does its runtime."""
        return self.channels_last and self.runtime.takes_channels_last

    def use_runtime(self, runtime: Runtime) -> None:
        """Run the model's forward passes with `runtime` from now on (on the batcher's thread)."""
        self.runtime = runtime

    def _try_channels_last(self) -> None:
        """Use NHWC if the model runs in it; some cannot (a .view() flatten of a spatial map)."""
        self._try_layout = False
        self.use_channels_last(True)
        try:
            self.predict_batch([self.preprocess(Image.new("RGB", (64, 64)))])
        except RuntimeError as error:
            log.info(
                "This model cannot run channels-last (%s); using the default layout.",
                str(error).split(". ")[0],
            )
            self.use_channels_last(False)

    def use_channels_last(self, enabled: bool) -> None:
        """Switch the model and its inputs to NHWC (True) or back to the default NCHW layout."""
        self.channels_last = enabled
        layout = torch.channels_last if enabled else torch.contiguous_format
        self.model = self.model.to(memory_format=layout)
        if isinstance(self.runtime, TorchRuntime):  # its reduced-precision copy takes the layout
            self.runtime = TorchRuntime(self.model, self.device, self.runtime.precision)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Apply the learner's item transforms (resize, to tensor) to an RGB image."""
        pipeline = getattr(self._per_thread, "pipeline", None)
        if pipeline is None:
            pipeline = self._per_thread.pipeline = copy.deepcopy(self._item_pipeline)
        return pipeline(PILImage(image))

    @torch.inference_mode()
    def predict_batch(self, items: list[torch.Tensor]) -> list[Prediction]:
        """Run the batch transforms and the model on preprocessed items, one Prediction each."""
        probabilities = self.forward(self.prepare_batch(items))
        return [self._prediction(row) for row in probabilities]

    @torch.inference_mode()
    def prepare_batch(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack preprocessed items and apply the learner's batch transforms on the device."""
        if self._try_layout:
            self._try_channels_last()
        # uint8 travels to the device: the batch transforms make it float there (4x less to copy)
        batch = self._batch_pipeline(torch.stack(items).to(self.device))
        # a plain tensor: fastai's TensorImage would route every layer through __torch_function__
        batch = batch.as_subclass(torch.Tensor)
        if self.takes_channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model alone on a prepared batch: probabilities as float32 on the CPU."""
        return self.probabilities(self.runtime(batch))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The learner's activation (softmax for a single-label classifier) on the CPU."""
        return self._activation(logits.float()).cpu()

    def _prediction(self, row: torch.Tensor) -> Prediction:
        """Turn one row of probabilities into a Prediction."""
        values = row.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return Prediction(
            label=self.classes[best],
            confidence=values[best],
            probabilities=dict(zip(self.classes, values, strict=True)),
            device=str(self.device),
        )

    def batch_transforms(self) -> Pipeline:
        """A private copy of the batch transforms, for use outside the batcher."""
        return _validation_copy(self._batch_pipeline)
