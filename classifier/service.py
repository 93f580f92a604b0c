"""The model as the web app sees it: load once, warm up, decode and predict through the batcher."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .batcher import DynamicBatcher
from .device import CudaQuery, choose_device
from .explain import Explainer, Explanation, last_conv_layer
from .images import DEFAULT_MAX_PIXELS, decode_image
from .loading import load_export
from .model import Classifier, Prediction

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 60.0


class NoModelError(RuntimeError):
    """No model is loaded; the message says how to get one."""


def no_model_message(path: Path) -> str:
    """What to do when there is no model file."""
    return (f"No model at {path}. Train one with `python train.py demo` (a small digits model, "
            f"about a minute) or `python train.py fit --data DIR`, or copy your fastai "
            f"export.pkl to {path}; then restart the app.")


@dataclass
class ServiceSettings:
    """Knobs of the serving path, with defaults that suit a small CPU server."""

    model_path: Path = Path("models/export.pkl")
    device: str = "auto"
    max_batch_size: int = 8
    max_wait_ms: float = 0.0
    draft: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    torch_threads: int = 0  # 0: the machine's cores divided by the number of workers
    workers: int = 1


class ModelService:
    """Owns the loaded Classifier and its batcher; every method is safe from many threads."""

    def __init__(self, settings: ServiceSettings, query: CudaQuery | None = None):
        self.settings = settings
        self.path = Path(settings.model_path)
        self.device = choose_device(settings.device, query).device
        self.classifier: Classifier | None = None
        self._batcher: DynamicBatcher | None = None
        self._explainer: Explainer | None = None

    @property
    def loaded(self) -> bool:
        """True once a model is loaded."""
        return self.classifier is not None

    @property
    def classes(self) -> list[str]:
        """The model's classes, empty without a model."""
        return list(self.classifier.classes) if self.classifier else []

    def start(self) -> None:
        """Load the model (when the file exists) and warm it up with one prediction."""
        _set_torch_threads(self.settings)
        if not self.path.exists():
            log.warning(no_model_message(self.path))
            return
        started = time.perf_counter()
        classifier = Classifier(load_export(self.path), self.device, self.path)
        batcher = DynamicBatcher(classifier.predict_batch, self.settings.max_batch_size,
                                 self.settings.max_wait_ms / 1000)
        self.classifier, self._batcher = classifier, batcher
        self.predict_image(Image.new("RGB", (64, 64)))
        log.info("Loaded %s in %.2f s: classes %s, device %s, batches of up to %d",
                 self.path, time.perf_counter() - started, ", ".join(classifier.classes),
                 self.device, self.settings.max_batch_size)

    def stop(self) -> None:
        """Stop the batcher thread."""
        if self._batcher:
            self._batcher.close()

    def predict_bytes(self, data: bytes) -> Prediction:
        """Decode an upload and predict it; raises ImageError for bad input, NoModelError."""
        classifier = self._require_model()
        draft_size = classifier.input_size if self.settings.draft else None
        image = decode_image(data, draft_size=draft_size, max_pixels=self.settings.max_pixels)
        return self.predict_image(image)

    def predict_image(self, image: Image.Image) -> Prediction:
        """Predict one decoded RGB image through the shared batcher."""
        classifier = self._require_model()
        future = self._batcher.submit(classifier.preprocess(image))
        return future.result(timeout=REQUEST_TIMEOUT_S)

    def decode(self, data: bytes, at_least: int | None = None) -> Image.Image:
        """Decode an upload as predict_bytes does, or for at least `at_least` px (ImageError)."""
        classifier = self._require_model()
        draft_size = (at_least or classifier.input_size) if self.settings.draft else None
        return decode_image(data, draft_size=draft_size, max_pixels=self.settings.max_pixels)

    @property
    def explainable(self) -> bool:
        """True when a model is loaded and "why?" can show where it looked (it has a conv layer)."""
        return self.classifier is not None and last_conv_layer(self.classifier.model) is not None

    def explain_image(self, image: Image.Image, label: str) -> Explanation:
        """Grad-CAM for `label` on a decoded image, outside the batcher (raises ExplainError)."""
        return self._explainer_for(self._require_model()).explain(image, label)

    def _explainer_for(self, classifier: Classifier) -> Explainer:
        """The loaded classifier's Explainer, made on first use (a new model gets a new one)."""
        explainer = self._explainer
        if explainer is None or explainer.classifier is not classifier:
            explainer = self._explainer = Explainer(classifier)
        return explainer

    def _require_model(self) -> Classifier:
        """The loaded classifier, or NoModelError."""
        if self.classifier is None:
            raise NoModelError(no_model_message(self.path))
        return self.classifier


def _set_torch_threads(settings: ServiceSettings) -> None:
    """Give each worker its share of the cores, so that workers don't oversubscribe the CPU."""
    threads = settings.torch_threads or max(1, (os.cpu_count() or 1) // max(1, settings.workers))
    torch.set_num_threads(threads)
