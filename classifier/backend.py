"""Choose how the model runs (SEAFRONT_BACKEND, SEAFRONT_PRECISION): among the backends and
precisions asked for, those whose answers agree with eager fp32 (agreement.py), and of those the
fastest, measured at load on a few batches in turns.

Runs on the batcher's thread (the export, the checks and the timing are torch work too).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from .agreement import Agreement, compare
from .errors import BackendError
from .precision import precision_name
from .predictor import Classifier
from .runtimes import (
    BACKENDS,
    EXPORTED_PRECISIONS,
    PACKAGES,
    ExportError,
    Runtime,
    TorchRuntime,
    backend_available,
    export_onnx,
    exported_runtime,
)

log = logging.getLogger(__name__)
TIMING_ROUNDS = 3  # each candidate runs batch 1 and the largest batch once per round, in turns


@dataclass(frozen=True)
class Candidate:
    """A backend at a precision (None: fp32)."""

    backend: str
    precision: torch.dtype | None

    @property
    def name(self) -> str:
        """`openvino bf16`."""
        return f"{self.backend} {precision_name(self.precision)}"


@dataclass
class Trial:
    """What became of one candidate: its runtime, how it agreed with fp32, how fast it ran."""

    candidate: Candidate
    runtime: Runtime | None = None
    agreement: Agreement | None = None
    failure: str = ""  # why it was not built, or why it does not agree
    batch_one_s: list[float] = field(default_factory=list)
    largest_batch_s: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when it was built and agrees with fp32."""
        return self.agreement is not None and not self.failure

    def cost(self, largest: int) -> float:
        """Seconds a lone image takes plus seconds per image in the largest batch (the lone
        client's latency and the loaded server's throughput, weighed alike), each the best of
        its rounds: other work on the machine only ever adds time."""
        return min(self.batch_one_s) + min(self.largest_batch_s) / largest


@dataclass
class Choice:
    """The runtime chosen, every trial, and what the choice cost at start-up."""

    runtime: Runtime
    trials: list[Trial]
    export_s: float = 0.0
    total_s: float = 0.0
    export_failure: str = ""

    def summary(self) -> str:
        """One line for the log: what serves, what else was tried, and what the choice cost."""
        others = [t.candidate.name for t in self.trials if t.runtime is not self.runtime]
        tried = f" (also tried: {', '.join(others)})" if others else ""
        export = f", ONNX export {self.export_s:.1f} s" if self.export_s else ""
        return f"Serving with {self.runtime.name}{tried}; chosen in {self.total_s:.1f} s{export}"


def resolve_backends(requested: str, device: torch.device) -> tuple[str, ...]:
    """The backends SEAFRONT_BACKEND asks for on `device`, or BackendError with a sentence."""
    requested = (requested or "auto").strip().lower()
    if requested not in BACKENDS:
        raise BackendError(
            f"Unknown backend {requested!r} (SEAFRONT_BACKEND): use auto, torch, onnxruntime or "
            "openvino."
        )
    if requested == "auto":
        if device.type != "cpu":
            return ("torch",)  # on a GPU torch with autocast and cuDNN is the fast path
        return ("torch", *(name for name in EXPORTED_PRECISIONS if backend_available(name)))
    if requested != "torch" and device.type != "cpu":
        raise BackendError(
            f"SEAFRONT_BACKEND={requested} runs on the CPU only, not on {device}: use "
            "SEAFRONT_BACKEND=auto or torch there, or --device cpu."
        )
    if not backend_available(requested):
        raise BackendError(
            f"SEAFRONT_BACKEND={requested} needs the {PACKAGES[requested]} package, which is not "
            "installed: `pip install -r requirements.txt`, or use SEAFRONT_BACKEND=torch."
        )
    return (requested,)


def candidates(
    backends: tuple[str, ...], precision: torch.dtype | None, precision_asked: bool
) -> list[Candidate]:
    """Each backend at `precision`, or at fp32 where it has no such precision and the precision
    was `auto` (an explicit one leaves such a backend out); BackendError when nothing is left."""
    chosen = []
    for backend in backends:
        supported = EXPORTED_PRECISIONS.get(backend)
        if supported is None or precision in supported:
            chosen.append(Candidate(backend, precision))
        elif not precision_asked:
            chosen.append(Candidate(backend, None))
    if not chosen:
        name = precision_name(precision)
        raise BackendError(
            f"SEAFRONT_BACKEND={backends[0]} cannot run in {name} (SEAFRONT_PRECISION={name}): "
            f"use SEAFRONT_PRECISION=auto or fp32, or SEAFRONT_BACKEND=auto."
        )
    return chosen


def choose_runtime(
    classifier: Classifier,
    wanted: list[Candidate],
    images: list[Image.Image],
    threads: int,
    max_batch_size: int,
) -> Choice:
    """Try each wanted candidate on the check images against eager fp32 and return the fastest
    that agrees (eager fp32 itself when none does). A reduced-precision candidate that disagrees
    is tried again in fp32; a model that cannot be exported is served by torch."""
    started = time.perf_counter()
    reference_runtime = TorchRuntime(classifier.model, classifier.device, None)
    if wanted == [Candidate("torch", None)]:  # the reference itself: nothing to compare
        return Choice(reference_runtime, [Trial(wanted[0], reference_runtime)])
    items = [classifier.preprocess(image) for image in images]
    batches = [
        classifier.prepare_batch(items[start : start + max_batch_size])
        for start in range(0, len(items), max_batch_size)
    ]
    reference = _probabilities(classifier, reference_runtime, batches)
    graph: bytes | None = None
    choice = Choice(reference_runtime, [])
    queue = list(wanted)
    while queue:
        candidate = queue.pop(0)
        if candidate == Candidate("torch", None):
            trial = Trial(candidate, reference_runtime, compare(reference, reference))
            choice.trials.append(trial)
            continue
        trial = Trial(candidate)
        choice.trials.append(trial)
        if candidate.backend != "torch" and graph is None:
            if choice.export_failure:
                trial.failure = choice.export_failure
                continue
            export_started = time.perf_counter()
            try:
                graph = export_onnx(classifier.model, batches[0])
            except ExportError as error:
                choice.export_failure = f"the model cannot be exported to ONNX ({error})"
                trial.failure = choice.export_failure
                log.warning(
                    "The %s, so it is served by torch, not %s.",
                    choice.export_failure.removeprefix("the "),
                    " or ".join(c.backend for c in wanted if c.backend != "torch"),
                )
                continue
            finally:
                choice.export_s = time.perf_counter() - export_started
        try:
            trial.runtime = _build(classifier, candidate, graph, threads, batches[0])
            trial.agreement = compare(reference, _probabilities(classifier, trial.runtime, batches))
        except Exception as error:  # noqa: BLE001 - a runtime that fails to build or run is skipped
            trial.runtime, trial.failure = None, f"it failed ({type(error).__name__}: {error})"
            log.warning("Not serving with %s: %s.", candidate.name, trial.failure)
            continue
        if not trial.agreement.passed:
            trial.failure = f"its {trial.agreement.describe()}"
            fallback = Candidate(candidate.backend, None)
            retry = candidate.precision is not None and all(
                fallback != other.candidate for other in choice.trials
            )
            log.warning(
                "Not serving with %s: %s; %s.",
                candidate.name,
                trial.failure,
                f"trying {fallback.name} instead" if retry else "falling back to fp32",
            )
            if retry and fallback not in queue:
                queue.append(fallback)
    passed = [trial for trial in choice.trials if trial.passed]
    if not passed:
        log.warning("No backend asked for agrees with fp32 torch: serving with torch fp32.")
        passed = [Trial(Candidate("torch", None), reference_runtime)]
    if len(passed) > 1:
        _time_in_turns(classifier, passed, items[0], max_batch_size)
        for trial in passed:
            log.info(
                "%s: %s; %.1f ms at batch 1, %.1f ms per image at batch %d",
                trial.candidate.name,
                trial.agreement.describe() if trial.agreement else "the reference",
                min(trial.batch_one_s) * 1000,
                min(trial.largest_batch_s) * 1000 / max_batch_size,
                max_batch_size,
            )
        passed.sort(key=lambda trial: trial.cost(max_batch_size))
    choice.runtime = passed[0].runtime or reference_runtime
    for trial in choice.trials:  # only the chosen runtime keeps its sessions and thread pools
        if trial.runtime is not choice.runtime:
            trial.runtime = None
    choice.total_s = time.perf_counter() - started
    return choice


def _build(
    classifier: Classifier,
    candidate: Candidate,
    graph: bytes | None,
    threads: int,
    example: torch.Tensor,
) -> Runtime:
    """The runtime of one candidate."""
    if candidate.backend == "torch":
        return TorchRuntime(classifier.model, classifier.device, candidate.precision)
    assert graph is not None
    return exported_runtime(
        candidate.backend, graph, tuple(example.shape[1:]), threads, candidate.precision
    )


def _probabilities(
    classifier: Classifier, runtime: Runtime, batches: list[torch.Tensor]
) -> torch.Tensor:
    """Every check image's probabilities under `runtime`, one row each."""
    return torch.cat([classifier.probabilities(runtime(_layout(runtime, b))) for b in batches])


def _layout(runtime: Runtime, batch: torch.Tensor) -> torch.Tensor:
    """The batch in the memory layout `runtime` takes."""
    return batch if runtime.takes_channels_last else batch.contiguous()


def _time_in_turns(
    classifier: Classifier, trials: list[Trial], item: torch.Tensor, largest: int
) -> None:
    """Time each trial at batch 1 and at the largest batch, TIMING_ROUNDS times, in turns, so a
    machine whose speed drifts favours none of them."""
    prepared = {size: classifier.prepare_batch([item] * size) for size in (1, largest)}
    calls: list[tuple[Trial, Callable[[], object], list[float]]] = []
    for trial in trials:
        runtime = trial.runtime
        assert runtime is not None
        for size, into in ((1, trial.batch_one_s), (largest, trial.largest_batch_s)):
            batch = _layout(runtime, prepared[size])
            runtime(batch)  # the first call at a shape allocates and picks kernels
            calls.append((trial, functools.partial(runtime, batch), into))
    for _ in range(TIMING_ROUNDS):
        for _trial, call, into in calls:
            begin = time.perf_counter()
            call()
            into.append(time.perf_counter() - begin)
