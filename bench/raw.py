"""One way of running the model alone, in a process of its own, timed on request.

    python -m bench.raw MODEL PATH      # PATH: eager, fast, or one of PATHS

bench.py starts one per path and asks each, in turns, for timings (a line "SIZE CALLS SECONDS"
in, a JSON line out). Each path has a process to itself, as it would in the app's worker: in one
process, the thread pools of ONNX Runtime and OpenVINO beside torch's OpenMP team are more
threads than cores, and the eager forward measured there would be slower than it is alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from bench.photos import TWELVE_MP, photo_jpeg
from classifier.agreement import check_images
from classifier.backend import candidates, choose_runtime, resolve_backends, serve_with
from classifier.decode import decode_image
from classifier.device import choose_device
from classifier.loading import load_export
from classifier.precision import choose_precision
from classifier.predictor import Classifier
from classifier.runtimes import Runtime, TorchRuntime, export_onnx, exported_runtime
from classifier.threads import torch_threads_for
from tests.support import MAX_PIXELS

PATHS = (
    "torch fp32 (eager, channels-last)",
    "torch bf16 autocast",
    "torch bf16 (bf16 weights and inputs)",
    "onnxruntime fp32",
    "openvino fp32",
    "openvino bf16",
)


class AutocastRuntime(Runtime):
    """Eager torch with bf16 autocast on the CPU: measured beside the app's bf16 path (bf16
    weights and inputs) to show why the app casts the weights instead."""

    takes_channels_last = True
    precision = torch.bfloat16

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(batch).float()


def build(classifier: Classifier, path: str, threads: int) -> dict:
    """Make `classifier` run `path`; what that cost, and what it chose for `fast`."""
    started = time.perf_counter()
    info: dict = {}
    if path == "fast":  # as the app's worker chooses (SEAFRONT_BACKEND=auto, PRECISION=auto)
        device = classifier.device
        wanted = candidates(
            resolve_backends("auto", device), choose_precision("auto", device), False
        )
        images = check_images(classifier.path, classifier.draft_size, MAX_PIXELS)
        choice = choose_runtime(classifier, wanted, images, threads, max_batch_size=8)
        serve_with(classifier, choice.runtime, threads)
        info.update(summary=choice.summary(), choice_s=choice.total_s, export_s=choice.export_s)
    elif path not in ("eager", PATHS[0]):
        example = classifier.prepare_batch(
            [classifier.preprocess(decode_image_of_photo(classifier))]
        )
        if path == "torch bf16 autocast":
            runtime: Runtime = AutocastRuntime(classifier.model)
        elif path.startswith("torch bf16"):
            runtime = TorchRuntime(classifier.model, classifier.device, torch.bfloat16)
        else:
            backend, precision = path.split()
            # one export for every exported path of a run (the first writes it beside the model)
            cached = Path(classifier.path).with_suffix(".onnx")
            if cached.exists() and cached.stat().st_mtime > Path(classifier.path).stat().st_mtime:
                graph = cached.read_bytes()
            else:
                begin = time.perf_counter()
                graph = export_onnx(classifier.model, example)
                info["export_s"] = time.perf_counter() - begin
                cached.write_bytes(graph)
            dtype = torch.bfloat16 if precision == "bf16" else None
            runtime = exported_runtime(backend, graph, tuple(example.shape[1:]), threads, dtype)
        serve_with(classifier, runtime, threads)
    info.update(runtime=classifier.runtime.name, build_s=time.perf_counter() - started)
    return info


def decode_image_of_photo(classifier: Classifier):
    """The benchmark's 12 MP photo, decoded as the app decodes it."""
    return decode_image(
        photo_jpeg("china.jpg", TWELVE_MP), draft_size=classifier.draft_size, max_pixels=MAX_PIXELS
    )


def main() -> int:
    """Build the path, then answer timing requests until stdin closes."""
    model, path = Path(sys.argv[1]), sys.argv[2]
    threads = torch_threads_for(workers=1)
    torch.set_num_threads(threads)
    classifier = Classifier(load_export(model), choose_device("auto").device, model)
    item = classifier.preprocess(decode_image_of_photo(classifier))
    classifier.prepare_batch([item])  # the channels-last probe, before any runtime is built
    info = build(classifier, path, threads)
    batches = {size: classifier.prepare_batch([item] * size) for size in (1, 8)}
    reference = TorchRuntime(classifier.model, classifier.device, None)(batches[8].contiguous())
    logits = classifier.runtime(batches[8])
    info.update(
        logits_diff=float((logits - reference).abs().max()),
        logit_scale=float(reference.abs().max()),
        probability_diff=float(
            (classifier.probabilities(logits) - classifier.probabilities(reference)).abs().max()
        ),
        channels_last=classifier.channels_last,
    )
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        size, calls, seconds = line.split()
        batch = batches[int(size)]
        classifier.forward(batch)  # two warm-up calls, as bench.time_calls does
        classifier.forward(batch)
        times, cpu_before = [], time.process_time()
        started = time.perf_counter()
        while len(times) < int(calls) or time.perf_counter() - started < float(seconds):
            begin = time.perf_counter()
            classifier.forward(batch)
            times.append(time.perf_counter() - begin)
        cpu = (time.process_time() - cpu_before) / len(times)
        print(json.dumps({"times": times, "cpu": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
