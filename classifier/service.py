"""The model as the web app sees it: load once, warm up, decode and predict through the batcher."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from formats.modelcard import sha256_of_bytes
from formats.regular import dangling_link

from .agreement import check_images
from .backend import Choice, candidates, choose_runtime, resolve_backends, serve_with
from .batcher import BatcherClosedError, DynamicBatcher
from .decode import decode_image
from .device import CudaQuery, choose_device
from .errors import DeadlineExceededError, DecoderBusyError, ExplainError, NoModelError
from .explain import Explainer, Explanation, why_not_explainable
from .integrity import CardCheck, FileState, read_checked
from .loading import load_export
from .observer import ServiceObserver
from .precision import choose_precision
from .predictor import Classifier, Prediction
from .reload import ModelFileWatch
from .threads import configure_torch_threads

if TYPE_CHECKING:
    from formats.modelcard import ModelCard

log = logging.getLogger(__name__)
WARM_UP_TIMEOUT_S = 120.0  # a first pass on a GPU may pick kernels for a while


def no_model_message(path: Path, reload_interval: float) -> str:
    """What to do when there is no model file (a sentence for the log, the page and the API)."""
    if reload_interval > 0:
        then = (
            f"the app picks it up by itself within a few seconds (it looks every "
            f"{reload_interval:g} s, SEAFRONT_MODEL_RELOAD_INTERVAL)."
        )
    else:
        then = "then restart the app (SEAFRONT_MODEL_RELOAD_INTERVAL is 0: it never looks again)."
    return (
        f"No model at {path}. Train one with python train.py demo (a small digits model, "
        f"about a minute) or python train.py fit --data DIR, or copy your fastai "
        f"export.pkl to {path}: {then}"
    )


@dataclass(frozen=True)
class ServiceSettings:
    """Knobs of the serving path; the app builds them from its settings table (webapp/settings.py,
    which holds every default and what each one means)."""

    model_path: Path
    device: str
    max_batch_size: int
    max_wait_ms: float
    draft_decode: bool
    max_pixels: int
    torch_threads: int  # 0: the machine's cores divided by the number of workers
    workers: int
    model_reload_interval: float  # seconds between looks for a replaced model file; 0: never
    model_max_bytes: int  # a larger model file is refused unread
    precision: str  # auto, fp32, bf16 or fp16; auto is bf16 where the hardware computes it
    backend: str  # auto, torch, onnxruntime or openvino (backend.py)
    request_timeout: float  # seconds a request may wait for the model before it is dropped
    max_decodes: int  # uploads decoded at once per worker, below the request threads
    release_memory: bool  # return a large image's memory to the system after its decode


class ModelService:
    """Owns the loaded Classifier and its batcher; every method is safe from many threads."""

    def __init__(
        self,
        settings: ServiceSettings,
        query: CudaQuery | None = None,
        observer: ServiceObserver | None = None,
    ):
        self.settings = settings
        self.observer = observer or ServiceObserver()  # metrics, when the web layer wires them
        self.path = Path(settings.model_path)
        self.device = choose_device(settings.device, query).device
        self.precision = choose_precision(settings.precision, self.device, query)
        self.candidates = candidates(
            resolve_backends(settings.backend, self.device),
            self.precision,
            precision_asked=(settings.precision or "auto").strip().lower() != "auto",
        )
        self.threads = 1
        # decodes hold CPU and memory by the image's size: fewer at once than request threads,
        # so a burst of large uploads queues here instead of starving every other request
        self._decoding = threading.BoundedSemaphore(max(1, settings.max_decodes))
        self.choice: Choice | None = None  # how the loaded model runs, and what else was tried
        # the classifier and its batcher, swapped together in one assignment on a reload
        self._loaded: tuple[Classifier, DynamicBatcher] | None = None
        self._card = CardCheck()  # the loaded model's card, swapped with it
        self.load_problem: str | None = None  # why the latest file was not loaded, if it failed
        self._watch = ModelFileWatch(self.path)
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = False
        self._explainer: Explainer | None = None
        # why "why?" cannot work for a loaded classifier ('' when it can), measured at load
        self._why_not: weakref.WeakKeyDictionary[Classifier, str] = weakref.WeakKeyDictionary()

    @property
    def classifier(self) -> Classifier | None:
        """The loaded Classifier, or None."""
        loaded = self._loaded
        return loaded[0] if loaded else None

    @property
    def card(self) -> ModelCard | None:
        """The loaded model's own card (sha256 matched, or none recorded); None otherwise."""
        return self._card.card

    @property
    def card_problem(self) -> str | None:
        """Why the card beside the loaded model is left out (stale or unreadable), or None."""
        return self._card.problem

    @property
    def loaded(self) -> bool:
        """True once a model is loaded."""
        return self.classifier is not None

    @property
    def classes(self) -> list[str]:
        """The model's classes, empty without a model."""
        return list(self.classifier.classes) if self.classifier else []

    def start(self) -> None:
        """Load the model (when the file exists), warm it up, and start looking for a new file."""
        threads = self.threads = configure_torch_threads(
            self.settings.workers, self.settings.torch_threads
        )
        self._watch.served(FileState.of(self.path))
        if not self.path.exists():
            message = no_model_message(self.path, self.settings.model_reload_interval)
            dangling = dangling_link(self.path)
            if dangling:
                self.load_problem = f"{dangling}."
                message = f"{self.load_problem} {message}"
            log.warning(message)
            self._start_watching()
            return
        started = time.perf_counter()
        try:
            self._loaded, self._card = self._load()
        except Exception:
            self.observer.model_load_failed(reload=False)
            raise
        self._log_card_problem()
        log.info(
            "Loaded %s in %.2f s: classes %s, device %s, batches of up to %d",
            self.path,
            time.perf_counter() - started,
            ", ".join(self.classes),
            self.device,
            self.settings.max_batch_size,
        )
        log.info(
            "Serving in %s, %s, with %d thread(s)",
            self._loaded[0].runtime.name,
            "channels-last" if self._loaded[0].takes_channels_last else "contiguous",
            threads,
        )
        self._start_watching()

    def _start_watching(self) -> None:
        """Look for a replaced model file every interval, on a thread of its own (daemon).

        It runs in each worker (start() runs after gunicorn's fork) and only stats files; the
        load itself starts on a thread of its own, as check_for_new_model does.
        """
        if self.settings.model_reload_interval <= 0 or self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._watch_forever, name="model-watch", daemon=True
        )
        self._watcher.start()

    def _watch_forever(self) -> None:
        """Call check_for_new_model every interval until stop()."""
        while not self._stopping.wait(self.settings.model_reload_interval):
            try:
                self.check_for_new_model()
            except Exception:  # the watch must outlive anything one look meets
                log.exception("Could not look at %s for a new model; looking again", self.path)

    def _log_card_problem(self) -> None:
        """Say once per load why the card beside the model is left out."""
        if self._card.problem:
            log.warning("Serving %s without its model card. %s", self.path, self._card.problem)

    def _load(self) -> tuple[tuple[Classifier, DynamicBatcher], CardCheck]:
        """Read and check the model file, load it, and warm it up (batch size 1 and the largest)."""
        # only ever the configured path: a regular file under the size cap, whose bytes are
        # checked against the model card first
        checked = read_checked(self.path, self.settings.model_max_bytes)
        learner = load_export(self.path, checked.data)
        classifier = Classifier(learner, self.device, self.path, self.precision)
        batcher = DynamicBatcher(
            classifier.predict_batch,
            self.settings.max_batch_size,
            self.settings.max_wait_ms / 1000,
            observer=self.observer,
        )
        try:
            # on the batcher's thread, like every other torch computation (see its `call`)
            self.choice = batcher.call(lambda: self._prepare(classifier)).result(
                timeout=WARM_UP_TIMEOUT_S
            )
            self._why_not[classifier] = batcher.call(
                lambda: why_not_explainable(classifier)
            ).result(timeout=WARM_UP_TIMEOUT_S)
        except BaseException:
            batcher.close()
            raise
        self.observer.model_loaded(sha256_of_bytes(checked.data), reload=self._loaded is not None)
        return (classifier, batcher), checked.card

    def _prepare(self, classifier: Classifier) -> Choice:
        """Choose the backend and precision that agree with fp32 and run fastest, then warm up."""
        images = check_images(self.path, classifier.draft_size, self.settings.max_pixels)
        choice = choose_runtime(
            classifier, self.candidates, images, self.threads, self.settings.max_batch_size
        )
        serve_with(classifier, choice.runtime, self.threads)
        if len(choice.trials) > 1:
            log.info(choice.summary())
        warm_up(classifier, self.settings.max_batch_size)
        return choice

    def _reload(self, state: FileState) -> None:
        """Load the replaced model file off the request path and swap it in, or keep the old."""
        started = time.perf_counter()
        try:
            loaded, card = self._load()
        except Exception as error:  # noqa: BLE001 - whatever is wrong with the new file, keep serving
            kept = "Kept serving the previous model" if self._loaded else "Still serving no model"
            log.error("%s: the new %s could not be loaded. %s", kept, self.path, error)
            self.load_problem = str(error)
            self.observer.model_load_failed(reload=True)
            self._watch.served(state)
            return
        if self._stopped:
            loaded[1].close()
            return
        # the swap is done before it is logged: a prediction after the log line gets the new model
        previous, self._loaded, self._card = self._loaded, loaded, card
        self.load_problem = None
        self._watch.served(state)
        log.info(
            "Reloaded %s in %.2f s: classes %s, device %s",
            self.path,
            time.perf_counter() - started,
            ", ".join(loaded[0].classes),
            self.device,
        )
        self._log_card_problem()
        if previous:
            previous[1].close()  # after the requests already queued on it are answered

    def check_for_new_model(self) -> None:
        """Start loading the model file in the background if it was replaced (one look: stats)."""
        state = self._watch.due()
        if state is not None:
            threading.Thread(
                target=self._reload, args=(state,), name="model-reload", daemon=True
            ).start()

    def stop(self) -> None:
        """Stop looking for a new model file, and stop the batcher thread."""
        self._stopped = True
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        if self._loaded:
            self._loaded[1].close()

    def predict_bytes(self, data: bytes) -> Prediction:
        """Decode an upload and predict it; raises ImageError for bad input, NoModelError."""
        return self.predict_image(self.decode(data))

    def predict_image(self, image: Image.Image) -> Prediction:
        """Predict one decoded RGB image through the shared batcher."""
        return self._on_loaded_model(
            lambda classifier, batcher, deadline: batcher.submit(
                classifier.preprocess(image), deadline
            )
        )

    def predict_images(self, images: list[Image.Image]) -> list[Prediction]:
        """Predict several decoded RGB images, queued together so they share forward passes."""
        return self._on_loaded_model(
            lambda classifier, batcher, deadline: batcher.submit_many(
                [classifier.preprocess(image) for image in images], deadline
            )
        )

    def decode(self, data: bytes, at_least: int | None = None) -> Image.Image:
        """Decode an upload as predict_bytes does, or for at least `at_least` px (ImageError)."""
        classifier, _ = self._require_model()
        draft_size = classifier.draft_size  # None: the model takes the photo as it is
        if draft_size is not None and at_least is not None:
            draft_size = max(draft_size, at_least)
        if not self.settings.draft_decode:
            draft_size = None
        wait = self.settings.request_timeout
        if not self._decoding.acquire(timeout=wait):
            raise DecoderBusyError(
                f"The server is busy decoding other photos and none finished within {wait:g} s "
                "(SEAFRONT_REQUEST_TIMEOUT): try again in a moment."
            )
        try:
            started = time.perf_counter()
            image = decode_image(
                data,
                draft_size=draft_size,
                max_pixels=self.settings.max_pixels,
                release_memory=self.settings.release_memory,
            )
            self.observer.decoded(time.perf_counter() - started)
        finally:
            self._decoding.release()
        return image

    @property
    def explainable(self) -> bool:
        """True when a model is loaded and "why?" can show where it looked."""
        return self.classifier is not None and not self.why_not_explainable

    @property
    def why_not_explainable(self) -> str:
        """Why "why?" cannot show where the loaded model looked (no conv layer, or its last
        feature map is too coarse), or '' when it can or no model is loaded."""
        classifier = self.classifier
        return self._why_not.get(classifier, "") if classifier is not None else ""

    def explain_image(self, image: Image.Image, label: str) -> Explanation:
        """Grad-CAM for `label` on a decoded image (raises ExplainError).

        It runs on the batcher's thread between batches, so that the process keeps one OpenMP
        thread team (see DynamicBatcher.call).
        """
        if self.why_not_explainable:
            raise ExplainError(self.why_not_explainable)
        return self._on_loaded_model(
            lambda classifier, batcher, deadline: batcher.call(
                lambda: self._explainer_for(classifier).explain(image, label), deadline
            )
        )

    def _on_loaded_model(self, send: Callable[[Classifier, DynamicBatcher, float], Future]):
        """Send a job to the loaded model's batcher and wait for its result, up to the deadline.

        A reload that swaps the model in meanwhile closes the old batcher; the job is then sent
        once more, and the new model answers. A job still queued at the deadline is dropped
        unrun (DeadlineExceededError), so a backlog never makes the model work for nobody.
        """
        timeout = self.settings.request_timeout
        deadline = time.monotonic() + timeout
        try:
            job = send(*self._require_model(), deadline)
        except BatcherClosedError:
            job = send(*self._require_model(), deadline)
        try:
            return job.result(timeout=max(0.0, deadline - time.monotonic()))
        except DeadlineExceededError:
            raise
        except TimeoutError:
            job.cancel()  # still queued: the batcher drops it; already running: it finishes
            raise DeadlineExceededError(
                f"The model did not answer within {timeout:g} s (SEAFRONT_REQUEST_TIMEOUT): the "
                "server is busy; try again in a moment."
            ) from None

    def _explainer_for(self, classifier: Classifier) -> Explainer:
        """The loaded classifier's Explainer, made on first use (a new model gets a new one)."""
        explainer = self._explainer
        if explainer is None or explainer.classifier is not classifier:
            explainer = self._explainer = Explainer(classifier)
        return explainer

    def _require_model(self) -> tuple[Classifier, DynamicBatcher]:
        """The loaded classifier and its batcher, or NoModelError."""
        loaded = self._loaded
        if loaded is None:
            raise NoModelError(no_model_message(self.path, self.settings.model_reload_interval))
        return loaded


def warm_up(classifier: Classifier, max_batch_size: int) -> None:
    """Run the first forward passes now, so no request pays for lazy set-up.

    The first pass at a batch shape allocates buffers and picks kernels (cuDNN, oneDNN, CUDA
    context and autocast caches), which can take seconds on a GPU.
    """
    item = classifier.preprocess(Image.new("RGB", (64, 64)))
    for size in sorted({1, max(1, max_batch_size)}):
        classifier.predict_batch([item] * size)
