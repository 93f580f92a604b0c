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
SPIN_DOWN_S = 0.02  # GNU OpenMP's threads spin for a few ms after torch's last parallel region


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
    graph: bytes | None = field(default=None, repr=False)  # the ONNX export, while choosing

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


def serve_with(classifier: Classifier, runtime: Runtime, threads: int) -> None:
    """Serve with `runtime` from now on. An exported runtime gets the worker's threads and torch
    keeps one: torch then only runs the batch transforms (and "Why?"), and an OpenMP team of its
    own would spin for milliseconds after each of them on the cores the runtime needs (measured
    in the app's worker: OpenVINO's batch 1 took 128 ms beside a second team, 25 ms alone)."""
    classifier.use_runtime(runtime)
    torch.set_num_threads(threads if runtime.backend == "torch" else 1)


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
    # one shape per batch: a learner without a Resize gives each image its own size (and an
    # exported graph, which takes the first one's, then fails on the others and is not used)
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for item in items:
        by_shape.setdefault(tuple(item.shape), []).append(item)
    batches = [
        classifier.prepare_batch(same[start : start + max_batch_size])
        for same in by_shape.values()
        for start in range(0, len(same), max_batch_size)
    ]
    checks = _Checks(classifier, batches, _probabilities(classifier, reference_runtime, batches))
    choice = Choice(reference_runtime, [])
    queue = list(wanted)
    while queue:
        candidate = queue.pop(0)
        trial = Trial(candidate)
        choice.trials.append(trial)
        if candidate == Candidate("torch", None):
            trial.runtime, trial.agreement = reference_runtime, checks.agree(reference_runtime)
        elif candidate.backend != "torch" and not _export_once(choice, classifier, batches[0]):
            trial.failure = choice.export_failure
        else:
            _try(trial, checks, choice.graph, threads)
        fallback = Candidate(candidate.backend, None)  # a disagreeing bf16 or fp16 tries fp32
        tried = any(fallback == other.candidate for other in choice.trials) or fallback in queue
        if trial.agreement and not trial.passed and candidate.precision is not None and not tried:
            queue.append(fallback)
    choice.runtime = _fastest(classifier, choice, items[0], max_batch_size) or reference_runtime
    for trial in choice.trials:  # only the chosen runtime keeps its sessions and thread pools
        if trial.runtime is not choice.runtime:
            trial.runtime = None
    choice.graph = None  # the runtime holds what it needs
    choice.total_s = time.perf_counter() - started
    return choice


@dataclass
class _Checks:
    """The check images' prepared batches and eager fp32's probabilities on them."""

    classifier: Classifier
    batches: list[torch.Tensor]
    reference: torch.Tensor

    def agree(self, runtime: Runtime) -> Agreement:
        """How `runtime`'s probabilities on the check images compare with fp32's."""
        return compare(self.reference, _probabilities(self.classifier, runtime, self.batches))


def _export_once(choice: Choice, classifier: Classifier, example: torch.Tensor) -> bool:
    """Export the model to ONNX on first need (choice.graph); False, logged once, if it cannot."""
    if choice.graph is not None or choice.export_failure:
        return choice.graph is not None
    started = time.perf_counter()
    try:
        choice.graph = export_onnx(classifier.model, example)
    except ExportError as error:
        choice.export_failure = f"the model cannot be exported to ONNX ({error})"
        log.warning("The %s, so it is served by torch.", choice.export_failure.removeprefix("the "))
        return False
    finally:
        choice.export_s = time.perf_counter() - started
    return True


def _try(trial: Trial, checks: _Checks, graph: bytes | None, threads: int) -> None:
    """Build the trial's runtime and check it against fp32; log why it will not serve."""
    candidate = trial.candidate
    try:
        trial.runtime = _build(checks.classifier, candidate, graph, threads, checks.batches[0])
        trial.agreement = checks.agree(trial.runtime)
    except Exception as error:  # noqa: BLE001 - a runtime that fails to build or run is skipped
        trial.runtime, trial.failure = None, f"it failed ({type(error).__name__}: {error})"
        log.warning("Not serving with %s: %s.", candidate.name, trial.failure)
        return
    if not trial.agreement.passed:
        trial.failure = f"its {trial.agreement.describe()}"
        fallback = Candidate(candidate.backend, None)
        log.warning(
            "Not serving with %s: %s; %s.",
            candidate.name,
            trial.failure,
            f"trying {fallback.name} instead" if candidate.precision else "falling back to fp32",
        )


def _fastest(
    classifier: Classifier, choice: Choice, item: torch.Tensor, largest: int
) -> Runtime | None:
    """The runtime of the fastest trial that agrees, timed in turns when there are several."""
    passed = [trial for trial in choice.trials if trial.passed]
    if not passed:
        log.warning("No backend asked for agrees with fp32 torch: serving with torch fp32.")
        return None
    if len(passed) > 1:
        _time_in_turns(classifier, passed, item, largest)
        for trial in passed:
            log.info(
                "%s: %s; %.1f ms at batch 1, %.1f ms per image at batch %d",
                trial.candidate.name,
                trial.agreement.describe() if trial.agreement else "the reference",
                min(trial.batch_one_s) * 1000,
                min(trial.largest_batch_s) * 1000 / largest,
                largest,
            )
        passed.sort(key=lambda trial: trial.cost(largest))
    return passed[0].runtime


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
    machine whose speed drifts favours none of them; each as it would serve (serve_with)."""
    threads = torch.get_num_threads()
    prepared = {size: classifier.prepare_batch([item] * size) for size in (1, largest)}
    calls: list[tuple[Runtime, Callable[[], object], list[float]]] = []
    for trial in trials:
        runtime = trial.runtime
        assert runtime is not None
        for size, into in ((1, trial.batch_one_s), (largest, trial.largest_batch_s)):
            batch = _layout(runtime, prepared[size])
            runtime(batch)  # the first call at a shape allocates and picks kernels
            calls.append((runtime, functools.partial(runtime, batch), into))
    try:
        for _ in range(TIMING_ROUNDS):
            for runtime, call, into in calls:
                torch.set_num_threads(threads if runtime.backend == "torch" else 1)
                if runtime.backend != "torch":
                    time.sleep(SPIN_DOWN_S)  # torch's OpenMP threads stop spinning
                begin = time.perf_counter()
                call()
                into.append(time.perf_counter() - begin)
    finally:
        torch.set_num_threads(threads)
