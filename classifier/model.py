"""A loaded fastai export that predicts batches with the learner's own validation transforms."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from fastai.learner import Learner
from fastai.vision.core import PILImage
from fasttransform.transform import Pipeline
from PIL import Image

VALID_SPLIT = 1  # fastai's split index of the validation set: no random augmentation


@dataclass(frozen=True)
class Prediction:
    """The answer for one image: top label, its probability, every class's probability."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    device: str

    def as_dict(self) -> dict:
        """The JSON shape of the API."""
        return {"label": self.label, "confidence": self.confidence,
                "probabilities": self.probabilities, "device": self.device}


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


class Classifier:
    """A fastai Learner on one device; `preprocess` is thread-safe, `predict_batch` is not."""

    def __init__(self, learner: Learner, device: torch.device, path: Path):
        self.path = path
        self.device = device
        self.classes = [str(label) for label in learner.dls.vocab]
        learner.dls.to(device)
        self.model = learner.model.eval().to(device)
        self._item_pipeline = _validation_copy(learner.dls.valid.after_item)
        self._batch_pipeline = _validation_copy(learner.dls.valid.after_batch)
        self._activation = getattr(learner.loss_func, "activation", None) or (
            lambda logits: torch.softmax(logits, dim=-1))
        self._per_thread = threading.local()
        self.input_size = _input_size(self._item_pipeline)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Apply the learner's item transforms (resize, to tensor) to an RGB image."""
        pipeline = getattr(self._per_thread, "pipeline", None)
        if pipeline is None:
            pipeline = self._per_thread.pipeline = copy.deepcopy(self._item_pipeline)
        return pipeline(PILImage(image))

    @torch.inference_mode()
    def predict_batch(self, items: list[torch.Tensor]) -> list[Prediction]:
        """Run the batch transforms and the model on preprocessed items, one Prediction each."""
        batch = torch.stack(items).to(self.device, non_blocking=True)
        probabilities = self._activation(self.model(self._batch_pipeline(batch))).float().cpu()
        return [self._prediction(row) for row in probabilities]

    def _prediction(self, row: torch.Tensor) -> Prediction:
        """Turn one row of probabilities into a Prediction."""
        values = row.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return Prediction(label=self.classes[best], confidence=values[best],
                          probabilities=dict(zip(self.classes, values, strict=True)),
                          device=str(self.device))

    def batch_transforms(self) -> Pipeline:
        """A private copy of the batch transforms, for use outside the batcher."""
        return _validation_copy(self._batch_pipeline)
