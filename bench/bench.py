#!/usr/bin/env python
"""Measure the serving path against the model's own cost, side by side, in one run.

    python bench/bench.py                 # builds a resnet34 (224 px) into bench/out/
    python bench/bench.py --model models/export.pkl --requests 100 --record

It prints the limit (the raw forward pass at batch 1 and 8), the baseline (`learn.predict` on
the uploaded bytes, as a naive app does), this app end to end over HTTP on 127.0.0.1 (started as
the README starts it), the worker's memory over 2,000 requests, and the performance targets.
All traffic goes to 127.0.0.1; the server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import torch
from fastai.callback.progress import ProgressCallback
from fastai.vision.augment import Resize
from fastai.vision.core import PILImage
from fastai.vision.data import ImageDataLoaders
from fastai.vision.learner import vision_learner
from torchvision.models import resnet34

from bench.photos import PHOTO_NAMES, TWELVE_MP, VGA, photo_jpeg, sample_photo
from classifier.decode import decode_image
from classifier.device import choose_device
from classifier.loading import load_export
from classifier.precision import choose_precision, precision_name
from classifier.predictor import Classifier
from classifier.threads import available_cores, torch_threads_for
from tests.support import MAX_PIXELS, LiveServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
HOST = "127.0.0.1"  # never anywhere else: this is a load generator
CLIENT_COUNTS = (1, 8)
TARGETS = {"latency": 1.5, "throughput": 0.85, "rss_mb": 50.0}


# --------------------------------------------------------------------------- the model


def build_model(folder: Path, size: int = 224) -> Path:
    """A resnet34 vision_learner at `size` px, random weights, exported to folder/export.pkl.

    Random weights cost the same to run as trained ones; the data are crops of the sample
    photos, only there because a fastai DataLoaders needs some.
    """
    path = folder / "export.pkl"
    if path.exists():
        return path
    data = folder / "data"
    for name in PHOTO_NAMES:
        (data / Path(name).stem).mkdir(parents=True, exist_ok=True)
        photo = sample_photo(name)
        for index in range(4):
            left = 40 * index
            photo.crop((left, 0, left + 400, 400)).save(data / Path(name).stem / f"{index}.jpg")
    dls = ImageDataLoaders.from_folder(
        data, valid_pct=0.25, seed=0, item_tfms=Resize(size), bs=4, num_workers=0
    )
    learn = vision_learner(dls, resnet34, pretrained=False)
    learn.remove_cb(ProgressCallback)
    learn.export(path.resolve())
    return path


# --------------------------------------------------------------------------- timing helpers


def time_calls(call, min_calls: int, min_seconds: float) -> list[float]:
    """Seconds per call, after two warm-up calls, until both minimums are reached."""
    call()
    call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return times


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (0..1) of `values`, by linear interpolation."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --------------------------------------------------------------------------- limit and baseline


class RawForward:
    """The model alone on prepared batches of a real photo, exactly as the app's forward runs.

    Every measurement is kept: the HTTP cases are each measured in turns with them, because a
    shared machine's speed drifts by tens of percent within seconds.
    """

    def __init__(self, classifier: Classifier, photo: bytes, batch_sizes=(1, 8)):
        self.classifier = classifier
        item = classifier.preprocess(
            decode_image(photo, draft_size=classifier.draft_size, max_pixels=MAX_PIXELS)
        )
        self.batches = {size: classifier.prepare_batch([item] * size) for size in batch_sizes}
        self.seconds: dict[int, list[float]] = {size: [] for size in batch_sizes}
        self.cpu_seconds: dict[int, list[float]] = {size: [] for size in batch_sizes}

    def measure(self, size: int, min_calls: int = 5, min_seconds: float = 2.0) -> float:
        """Median seconds of one forward pass at batch `size`, measured now."""
        batch = self.batches[size]
        cpu_before = time.process_time()
        times = time_calls(lambda: self.classifier.forward(batch), min_calls, min_seconds)
        # every thread of this process: torch's own, spinning included (the clients are idle)
        self.cpu_seconds[size].append((time.process_time() - cpu_before) / (len(times) + 2))
        median = statistics.median(times)
        self.seconds[size].append(median)
        return median

    def cpu_per_image(self, size: int) -> float:
        """CPU seconds (all cores together) one image costs in a forward pass at batch `size`."""
        return statistics.median(self.cpu_seconds[size]) / size

    def summary(self) -> dict:
        """Per batch size, the median over every measurement: ms, ms per image, images/s."""
        results = {}
        for size, values in self.seconds.items():
            median = statistics.median(values)
            results[str(size)] = {
                "ms": median * 1000,
                "ms_per_image": median * 1000 / size,
                "cpu_ms_per_image": self.cpu_per_image(size) * 1000,
                "images_per_s": size / median,
                "measurements": len(values),
                "range_ms": [min(values) * 1000, max(values) * 1000],
            }
        return results


def measure_learn_predict(model_path: Path, photos: dict[str, bytes]) -> dict:
    """`learn.predict(PILImage.create(bytes))` per image, fastai's own one-at-a-time path."""
    learner = load_export(model_path)
    learner.remove_cb(ProgressCallback)
    results = {}
    for name, data in photos.items():
        times = time_calls(lambda data=data: learner.predict(PILImage.create(data)), 8, 3.0)
        median = statistics.median(times)
        results[name] = {"ms": median * 1000, "images_per_s": 1 / median}
    return results


# --------------------------------------------------------------------------- the app over HTTP


def worker_of(server: LiveServer) -> psutil.Process:
    """The gunicorn worker process of `server` (the one that holds the model)."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    if len(children) != 1:
        raise SystemExit(f"Expected one gunicorn worker, found {len(children)}")
    return children[0]


class WorkerCpu:
    """CPU time of the worker's threads while clients run: the model's threads and the rest.

    The model's threads are torch's thread team, the `model_threads` busiest threads (the
    batcher thread and its OpenMP workers); the others receive, parse, decode, resize and answer.
    """

    def __init__(self, worker: psutil.Process, model_threads: int):
        self.worker = worker
        self.model_threads = model_threads
        self.used: Counter[int] = Counter()

    def _now(self) -> dict[int, float]:
        return {
            thread.id: thread.user_time + thread.system_time for thread in self.worker.threads()
        }

    @contextmanager
    def counting(self):
        """Add the CPU time each thread uses inside the `with` block."""
        before = self._now()
        yield
        for thread, seconds in self._now().items():
            self.used[thread] += seconds - before.get(thread, 0.0)

    def per_request(self, requests: int) -> tuple[float, float]:
        """CPU seconds per request: (the model's threads, every other thread)."""
        ordered = sorted(self.used.values(), reverse=True)
        return (
            sum(ordered[: self.model_threads]) / requests,
            sum(ordered[self.model_threads :]) / requests,
        )


def multipart(data: bytes, filename: str = "photo.jpg") -> tuple[bytes, str]:
    """A multipart/form-data body with one `file` field, as a browser or `curl -F` sends."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


@dataclass
class Load:
    """What a run of clients measured."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        """p50, p95 (ms), throughput (requests/s) and errors."""
        return {
            "requests": len(self.latencies) + len(self.errors),
            "p50_ms": percentile(self.latencies, 0.5) * 1000,
            "p95_ms": percentile(self.latencies, 0.95) * 1000,
            "per_s": len(self.latencies) / self.seconds,
            "errors": len(self.errors),
        }


def run_clients(port: int, bodies: list[tuple[bytes, str]], clients: int, requests: int) -> Load:
    """`clients` threads, each on its own keep-alive connection, send `requests` POSTs in all.

    Request i sends bodies[i % len(bodies)]; each client waits for its answer before sending
    the next one (a closed loop, like a person or a synchronous caller).
    """
    load, lock = Load(), threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=120)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            body, content_type = bodies[index % len(bodies)]
            begin = time.perf_counter()
            try:
                connection.request(
                    "POST", "/api/predict", body=body, headers={"Content-Type": content_type}
                )
                response = connection.getresponse()
                answer = response.read()
                elapsed = time.perf_counter() - begin
                ok = response.status == 200 and "label" in json.loads(answer)
            except (OSError, ValueError, http.client.HTTPException) as error:
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=120)
                ok, answer, elapsed = False, repr(error).encode(), 0.0
            with lock:
                if ok:
                    load.latencies.append(elapsed)
                else:
                    load.errors.append(answer[:200].decode(errors="replace"))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - started
    return load


# --------------------------------------------------------------------------- the report


def machine() -> dict:
    """What ran the benchmark."""
    model_name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cores": available_cores(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None),
    }


def verdicts(results: dict) -> list[tuple[str, float, str, bool]]:
    """(target, measured ratio or value, the bound, met) for each performance target."""
    http_ = results["http"]
    one = http_["12MP"]["1"]
    latency = one["p50_ms"] / one["limit_ms"]
    rows = [
        (
            "12 MP photo, 1 client: p50 / raw batch-1 forward",
            latency,
            f"<= {TARGETS['latency']}",
            latency <= TARGETS["latency"],
        )
    ]
    for photo in ("640x480", "12MP"):
        eight = http_[photo]["8"]
        ratio = eight["per_s"] / eight["limit_per_s"]
        ceiling = (
            f" (at most {eight['ceiling']:.2f} on these cores, table above)"
            if eight["ceiling"]
            else ""
        )
        rows.append(
            (
                f"{photo} photo, 8 clients: throughput / raw batch-8 throughput",
                ratio,
                f">= {TARGETS['throughput']}{ceiling}",
                ratio >= TARGETS["throughput"],
            )
        )
    errors = results["errors"]
    rows.append(("errors over every HTTP request", errors, "== 0", errors == 0))
    growth = results["rss"]["growth_mb"]
    rows.append(
        (
            f"worker RSS growth over {results['rss']['requests']} requests (MB)",
            growth,
            f"<= {TARGETS['rss_mb']:.0f}",
            growth <= TARGETS["rss_mb"],
        )
    )
    return rows


def report(results: dict) -> str:
    """The run as Markdown: the machine, the measurements and the targets."""
    info, forward, baseline = results["machine"], results["forward"], results["baseline"]
    lines = [
        f"### {results['when']}",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, Python "
        f"{info['python']}{', GPU ' + info['gpu'] if info['gpu'] else ''}",
        f"- model: {results['model']} (input {results['input_size']} px); server: "
        f"`python application.py` (1 worker, 8 threads), device {results['device']}, "
        f"{results['precision']}, {results['layout']}, {results['threads']} torch threads",
        f"- load average (1 min) at start / end: {results['load'][0]:.2f} / "
        f"{results['load'][1]:.2f}; {results['note']}",
        "",
        "| what | batch / clients | ms (p50) | p95 ms | per second | raw forward around it |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for size, row in forward.items():
        low, high = row["range_ms"]
        lines.append(
            f"| raw forward (the limit) | batch {size} | {row['ms']:.1f} "
            f"({row['ms_per_image']:.1f}/image) | | {row['images_per_s']:.1f} | median "
            f"of {row['measurements']}, {low:.0f}-{high:.0f} ms |"
        )
    for photo, row in baseline.items():
        lines.append(
            f"| `learn.predict(PILImage.create(bytes))`, {photo} | 1 | {row['ms']:.1f} "
            f"| | {row['images_per_s']:.1f} | |"
        )
    for photo, by_clients in results["http"].items():
        for clients, row in by_clients.items():
            lines.append(
                f"| this app over HTTP, {photo} | {clients} clients | "
                f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['per_s']:.1f} | "
                f"batch {row['limit_batch']}: {row['limit_ms']:.1f} ms, "
                f"{row['limit_per_s']:.1f}/s |"
            )
    rss = results["rss"]
    lines += [
        "",
        "Each HTTP case runs in short turns with raw forward passes (batch 1 for one client, "
        "batch 8 for eight; their median is in the last column), because a shared machine's "
        "speed drifts within seconds; the ratios compare each case with its own column.",
        "",
        f"Worker RSS over {rss['requests']} requests ({rss['mix']}), sampled every 100: "
        f"{rss['before_mb']:.1f} MB at the start, {rss['after_mb']:.1f} MB at the end, between "
        f"{rss['min_mb']:.1f} and {rss['max_mb']:.1f}; growth (mean of the last quarter of the "
        f"samples minus mean of the first) {rss['growth_mb']:+.1f} MB.",
        "",
        "Worker CPU time per request, all cores together, while the clients ran: torch's "
        "threads (the model) and the rest (receiving, parsing, decoding, resizing, answering). "
        "With 8 clients the cores are saturated, so throughput is cores / CPU per request; "
        "even if the model's threads cost no more than the raw forward, the ratio cannot exceed "
        "raw forward CPU per image / (that + the rest), the last column.",
        "",
        "| case | model's threads | the rest | raw forward CPU per image | highest "
        "throughput ratio these cores allow |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for photo, by_clients in results["http"].items():
        for clients, row in by_clients.items():
            ceiling = f"{row['ceiling']:.2f}" if clients != "1" and row["ceiling"] else ""
            lines.append(
                f"| {photo}, {clients} clients | {row['model_cpu_ms']:.1f} ms | "
                f"{row['other_cpu_ms']:.1f} ms | {row['forward_cpu_ms']:.1f} ms "
                f"(batch {row['limit_batch']}) | {ceiling} |"
            )
    lines += ["", "| target | measured | bound | |", "| --- | ---: | --- | --- |"]
    for name, value, bound, met in verdicts(results):
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {shown} | {bound} | {'met' if met else 'NOT met'} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        help="a fastai export.pkl (default: build a "
        "resnet34 at 224 px, random weights, into bench/out/)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="requests per HTTP case (photo x clients); default 200",
    )
    parser.add_argument(
        "--rss-requests", type=int, default=2000, help="requests for the memory check; default 2000"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument("--note", default="", help="a remark for the record (e.g. machine busy)")
    parser.add_argument(
        "--record", action="store_true", help=f"append the report to {RESULTS.relative_to(ROOT)}"
    )
    return parser.parse_args(argv)


def measure_http(
    server: LiveServer, photos: dict[str, bytes], requests: int, raw: RawForward, threads: int
) -> tuple[dict, int]:
    """p50, p95 and throughput for each photo at 1 and 8 clients, each compared with the raw
    forward (batch 1 for one client, batch 8 for eight) measured in turns with it, and the
    worker's CPU time per request."""
    results, errors = {}, 0
    worker = worker_of(server)
    for name, data in photos.items():
        body = [multipart(data)]
        results[name] = {}
        for clients in CLIENT_COUNTS:
            size = 1 if clients == 1 else 8
            run_clients(server.port, body, clients, 2 * clients)  # warm the connections
            # short turns: a shared machine's speed drifts within seconds, and each turn of
            # requests is compared with raw forwards measured right beside it
            turn = 10 if clients == 1 else 6 * clients
            load, limits, cpu = Load(), [], WorkerCpu(worker, threads)
            for _ in range(max(1, round(requests / turn))):
                limits.append(raw.measure(size, min_calls=3 if size == 1 else 2, min_seconds=0.2))
                with cpu.counting():
                    part = run_clients(server.port, body, clients, turn)
                load.latencies += part.latencies
                load.errors += part.errors
                load.seconds += part.seconds
            summary = results[name][str(clients)] = load.summary()
            limit = statistics.median(limits)
            summary.update(limit_batch=size, limit_ms=limit * 1000, limit_per_s=size / limit)
            model_cpu, other_cpu = cpu.per_request(len(load.latencies) + len(load.errors))
            # on the CPU, with the cores saturated, throughput is cores / CPU per request: even
            # if the model's threads cost no more than the raw forward, the rest caps the ratio
            # (on a GPU the forward's cost is not CPU time, so there is no such ceiling)
            forward_cpu = raw.cpu_per_image(size)
            on_cpu = raw.classifier.device.type == "cpu"
            summary.update(
                model_cpu_ms=model_cpu * 1000,
                other_cpu_ms=other_cpu * 1000,
                forward_cpu_ms=forward_cpu * 1000,
                ceiling=forward_cpu / (forward_cpu + other_cpu) if on_cpu else None,
            )
            errors += len(load.errors)
            print(
                f"HTTP {name}, {clients} client(s): p50 {summary['p50_ms']:.1f} ms, p95 "
                f"{summary['p95_ms']:.1f} ms, {summary['per_s']:.1f}/s, "
                f"{summary['errors']} errors; raw batch-{size} forward in turns with it "
                f"{limit * 1000:.1f} ms (median of {len(limits)}); worker CPU per request: "
                f"model {model_cpu * 1000:.1f} ms, the rest {other_cpu * 1000:.1f} ms",
                flush=True,
            )
            if load.errors:
                print("  first error:", load.errors[0], flush=True)
    return results, errors


def measure_rss(server: LiveServer, photos: dict[str, bytes], requests: int) -> dict:
    """The worker's resident memory over `requests` more requests, sampled every 100.

    glibc's allocator keeps or returns freed memory as it sees fit, so a single sample swings
    by tens of MB (a batch of 8 holds about 100 MB of activations for a moment); a leak shows
    as a rise from the first samples to the last, so growth compares their means.
    """
    worker = worker_of(server)
    # mostly small photos so 2,000 requests fit the time budget; 1 in 10 is a 12 MP one
    mixed = [multipart(photos["640x480"])] * 9 + [multipart(photos["12MP"])]
    samples, errors, done = [worker.memory_info().rss / 2**20], 0, 0
    while done < requests:
        chunk = min(100, requests - done)
        errors += len(run_clients(server.port, mixed, 8, chunk).errors)
        done += chunk
        samples.append(worker.memory_info().rss / 2**20)
    ends = max(1, len(samples) // 4)
    first, last = statistics.mean(samples[:ends]), statistics.mean(samples[-ends:])
    print(
        f"worker RSS {samples[0]:.1f} MB -> {samples[-1]:.1f} MB after {requests} requests "
        f"(between {min(samples):.1f} and {max(samples):.1f}; {errors} errors)",
        flush=True,
    )
    return {
        "before_mb": samples[0],
        "after_mb": samples[-1],
        "first_mb": first,
        "last_mb": last,
        "growth_mb": last - first,
        "min_mb": min(samples),
        "max_mb": max(samples),
        "samples": len(samples),
        "requests": requests,
        "mix": "8 clients; 9 in 10 a 640x480 photo, 1 in 10 a 12 MP photo",
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the report."""
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    model_path = (args.model or build_model(OUT / "resnet34-224")).resolve()
    photos = {"12MP": photo_jpeg("china.jpg", TWELVE_MP), "640x480": photo_jpeg("china.jpg", VGA)}
    print(
        f"model {model_path}; photos: 12MP {len(photos['12MP']):,} bytes, 640x480 "
        f"{len(photos['640x480']):,} bytes",
        flush=True,
    )

    # the limit: the model alone, with the threads, layout and precision of the app's worker
    threads = torch_threads_for(workers=1)
    torch.set_num_threads(threads)
    device = choose_device("auto").device
    precision = choose_precision("auto", device)
    classifier = Classifier(load_export(model_path), device, model_path, precision)
    raw = RawForward(classifier, photos["12MP"])
    for size in raw.batches:
        print(f"raw forward, batch {size}: {raw.measure(size, 10, 3.0) * 1000:.1f} ms", flush=True)
    baseline = measure_learn_predict(model_path, photos)
    for name, row in baseline.items():
        print(f"learn.predict, {name}: {row['ms']:.1f} ms", flush=True)

    server = LiveServer(model_path, OUT, port=args.port)
    try:
        server.wait_ready(timeout=180)
        http_results, errors = measure_http(server, photos, args.requests, raw, threads)
        rss = measure_rss(server, photos, args.rss_requests)
    finally:
        server.stop()

    results = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "model": str(
            model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path
        ),
        "input_size": classifier.input_size,
        "device": str(device),
        "precision": precision_name(precision),
        "threads": threads,
        "layout": "channels-last" if classifier.channels_last else "contiguous",
        "forward": raw.summary(),
        "baseline": baseline,
        "http": http_results,
        "rss": rss,
        "errors": errors + rss["errors"],
        "load": (load_start, os.getloadavg()[0]),
        "seconds": time.monotonic() - started,
        "note": args.note or "no other note",
    }

    text = report(results)
    print()
    print(text)
    print(f"(took {results['seconds']:.0f} s; server log: {server.log_path})")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
    if args.record:
        with RESULTS.open("a") as record:
            record.write("\n" + text)
        print(f"appended to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
