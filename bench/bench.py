#!/usr/bin/env python
"""Measure the serving path against the model's own cost, side by side, in one run.

    python -m bench.bench                 # builds a resnet34 (224 px) into bench/out/
    python -m bench.bench --model models/export.pkl --requests 100 --record

It prints both limits (the learner's model alone at batch 1 and 8 in eager fp32, and on the
fastest raw path: the backend and precision the app chooses), the baseline (`learn.predict` on
the uploaded bytes, as a naive app does), this app end to end over HTTP on 127.0.0.1 (started as
the README starts it), how its answers agree with `learn.predict` on real photos, the peers
(the seed app, Gradio, LitServe; bench/peers/) on the same model, photos and load, the worker's
memory over 2,000 requests, and the performance targets. All traffic goes to 127.0.0.1; every
server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
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

from bench.peers.clients import PEERS, Peer, Sender
from bench.photos import PHOTO_NAMES, TWELVE_MP, VGA, photo_jpeg, sample_photo
from bench.raw import PATHS
from classifier.agreement import BOUND, MARGIN, compare
from classifier.device import choose_device
from classifier.loading import load_export
from classifier.predictor import Classifier
from classifier.threads import available_cores, torch_threads_for
from tests.support import LiveServer, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
HOST = "127.0.0.1"  # never anywhere else: this is a load generator
CLIENT_COUNTS = (1, 8)
# issue 13: against eager fp32 (the learner's model alone), and against the best peer
TARGETS = {"latency": 1.0, "throughput": 1.5, "peers": 2.0, "rss_mb": 50.0}
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
MODEL_FOLDER = "resnet34-224-bench"
LOGIT_SCALE_DOWN = 20.0


# --------------------------------------------------------------------------- the model


def build_model(folder: Path, size: int = 224) -> Path:
    """A resnet34 vision_learner at `size` px, from random weights trained for one epoch on
    crops of the sample photos, its last layer scaled down, exported to folder/export.pkl.

    It costs the same to run as a well-trained one. The epoch and the scaling are there for the
    agreement figures: they keep its probabilities away from 0 and 1 (untrained, every answer
    is 1.0 or 1e-19, and any two paths agree).
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
    learn.fit(1, 1e-3)
    # one epoch still leaves logits near 40, so every probability is 0 or 1 and any two paths
    # agree; the last layer is scaled down so that they say something (it costs the same to run)
    last = [module for module in learn.model.modules() if isinstance(module, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight /= LOGIT_SCALE_DOWN
        if last.bias is not None:
            last.bias /= LOGIT_SCALE_DOWN
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
    """The model alone on prepared batches of a real photo, in a process of its own (bench/raw.py),
    exactly as the app's forward runs; `path` is `eager` (fp32 torch), `fast` (what the app
    chooses) or one of bench.raw.PATHS.

    Every measurement is kept: the HTTP cases are each measured in turns with them, because a
    shared machine's speed drifts by tens of percent within seconds.
    """

    def __init__(self, model: Path, path: str, batch_sizes=(1, 8)):
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.raw", str(model), path],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.raw {path!r} exited before it was ready")
        self.info = json.loads(line)
        self.batches = batch_sizes
        self.seconds: dict[int, list[float]] = {size: [] for size in batch_sizes}
        self.cpu_seconds: dict[int, list[float]] = {size: [] for size in batch_sizes}

    def measure(self, size: int, min_calls: int = 5, min_seconds: float = 2.0) -> float:
        """Median seconds of one forward pass at batch `size`, measured now."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{size} {min_calls} {min_seconds}\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        # every thread of that process: torch's own (or the runtime's), spinning included
        self.cpu_seconds[size].append(answer["cpu"])
        median = statistics.median(answer["times"])
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

    def stop(self) -> None:
        """End the process (its stdin closes, and it returns)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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


def ours_sender() -> Sender:
    """This app's API: POST /api/predict with a multipart `file`; the answer's label."""
    bodies: dict[int, tuple[bytes, str]] = {}

    def send(connection: http.client.HTTPConnection, photo: bytes) -> str:
        body, content_type = bodies.setdefault(id(photo), multipart(photo))
        connection.request(
            "POST", "/api/predict", body=body, headers={"Content-Type": content_type}
        )
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise ValueError(answer[:200].decode(errors="replace"))
        return json.loads(answer)["label"]

    return send


def run_clients(
    port: int,
    photos: list[bytes],
    clients: int,
    requests: int,
    make_sender: Callable[[], Sender] = ours_sender,
) -> Load:
    """`clients` threads, each on its own keep-alive connection, send `requests` photos in all.

    Request i sends photos[i % len(photos)] with a sender of `make_sender` (one per client);
    each client waits for its answer before sending the next one (a closed loop, like a person
    or a synchronous caller).
    """
    load, lock = Load(), threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=120)
        send = make_sender()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            begin = time.perf_counter()
            try:
                ok, answer = bool(send(connection, photos[index % len(photos)])), ""
                elapsed = time.perf_counter() - begin
            except (
                OSError,
                ValueError,
                KeyError,
                RuntimeError,
                http.client.HTTPException,
            ) as error:
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=120)
                send = make_sender()
                ok, answer, elapsed = False, repr(error), 0.0
            with lock:
                if ok:
                    load.latencies.append(elapsed)
                else:
                    load.errors.append(answer[:200])
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


def best_peer(results: dict, photo: str) -> tuple[str, dict] | None:
    """The peer with the highest throughput at 8 clients on `photo`, and its row."""
    rows = [
        (name, row[f"{photo} 8"])
        for name, row in results["peers"].items()
        if isinstance(row, dict) and f"{photo} 8" in row
    ]
    return max(rows, key=lambda pair: pair[1]["peer"]["per_s"]) if rows else None


def verdicts(results: dict) -> list[tuple[str, float, str, bool]]:
    """(target, measured ratio or value, the bound, met) for each performance target."""
    http_ = results["http"]
    one = http_["12MP"]["1"]
    latency = one["p50_ms"] / one["limit_ms"]
    rows = [
        (
            "12 MP photo, 1 client: p50 / eager-fp32 batch-1 forward",
            latency,
            f"<= {TARGETS['latency']}",
            latency <= TARGETS["latency"],
        )
    ]
    eight = http_["640x480"]["8"]
    ratio = eight["per_s"] / eight["limit_per_s"]
    ceiling = eight["ceiling_per_s"]
    rows.append(
        (
            "640x480 photo, 8 clients: throughput / eager-fp32 batch-8 throughput",
            ratio,
            f">= {TARGETS['throughput']}"
            + (
                f" (at most {ceiling / eight['limit_per_s']:.2f} on these cores, table above)"
                if ceiling
                else ""
            ),
            ratio >= TARGETS["throughput"],
        )
    )
    for photo in ("640x480", "12MP"):
        best = best_peer(results, photo)
        if best is None:
            rows.append(
                (f"{photo}, 8 clients: throughput / best peer's", 0.0, "peers not run", False)
            )
            continue
        name, row = best
        ratio = row["ours"]["per_s"] / max(row["peer"]["per_s"], 1e-9)
        rows.append(
            (
                f"{photo} photo, 8 clients: throughput / the best peer's ({name}), in turns",
                ratio,
                f">= {TARGETS['peers']}",
                ratio >= TARGETS["peers"],
            )
        )
    errors = results["errors"]
    rows.append(("errors over every request to this app", errors, "== 0", errors == 0))
    growth = results["rss"]["growth_mb"]
    rows.append(
        (
            f"worker RSS growth over {results['rss']['requests']} requests (MB)",
            growth,
            f"<= {TARGETS['rss_mb']:.0f}",
            growth <= TARGETS["rss_mb"],
        )
    )
    agreement = results["agreement"]
    rows.append(
        (
            f"top labels changed vs learn.predict, of {agreement['decided']} real photos whose "
            f"fp32 margin exceeds {MARGIN}",
            agreement["label_changes"],
            "== 0",
            agreement["label_changes"] == 0,
        )
    )
    rows.append(
        (
            f"largest probability difference vs learn.predict on {agreement['photos']} real photos",
            agreement["largest_difference"],
            f"<= {BOUND}",
            agreement["largest_difference"] <= BOUND,
        )
    )
    return rows


def report(results: dict) -> str:
    """The run as Markdown: the machine, the measurements and the targets."""
    info, forward, baseline = results["machine"], results["forward"], results["baseline"]
    served, backends = results["served"], results["backends"]
    lines = [
        f"### {results['when']}",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, Python "
        f"{info['python']}{', GPU ' + info['gpu'] if info['gpu'] else ''}",
        f"- model: {results['model']} (input {results['input_size']} px); server: "
        f"`python application.py` (1 worker, 8 threads), device {results['device']}, serving "
        f"with **{served['runtime']}** (SEAFRONT_BACKEND=auto, SEAFRONT_PRECISION=auto), "
        f"{served['layout']}, {served['threads']} threads",
        f"- start-up of the app's worker: model loaded and ready in {served['load_s']} s, of "
        f"which the backend choice {served['choice_s']} s (ONNX export {served['export_s']} s, "
        f"the rest: agreement checks and timing); the same choice in this process: "
        f"{results['chosen_here']['runtime']} in {results['chosen_here']['total_s']:.1f} s "
        f"(export {results['chosen_here']['export_s']:.1f} s)",
        f"- load average (1 min) at start / end: {results['load'][0]:.2f} / "
        f"{results['load'][1]:.2f}; {results['note']}",
        "",
        "Backends and precisions, the model alone, each in a process of its own, in turns "
        "(build: the ONNX export included for the exported runtimes):",
        "",
        "| path | batch 1, ms | batch 8, ms/image | logits vs eager fp32, max abs diff "
        "(largest logit) | probabilities, max diff | build s (of it export) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in backends["paths"].items():
        if "failed" in row:
            lines.append(f"| {name} | failed: {row['failed']} | | | | |")
            continue
        lines.append(
            f"| {name} | {row['batch1_ms']:.1f} | {row['batch8_ms_per_image']:.1f} | "
            f"{row['logits_diff']:.2g} ({row['logit_scale']:.1f}) | "
            f"{row['probability_diff']:.2g} | {row['build_s']:.1f}"
            + (f" ({row['export_s']:.1f})" if row.get("export_s") else "")
            + " |"
        )
    lines += [
        "",
        "| what | batch / clients | ms (p50) | p95 ms | per second | raw forward around it: "
        "eager fp32; fastest |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for path, label in (("eager", "eager fp32"), ("fast", "fastest raw path")):
        for size, row in forward[path].items():
            low, high = row["range_ms"]
            lines.append(
                f"| raw forward, {label} | batch {size} | {row['ms']:.1f} "
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
                f"batch {row['limit_batch']}: {row['limit_ms']:.1f} ms ({row['limit_per_s']:.1f}"
                f"/s); {row['fast_ms']:.1f} ms ({row['fast_per_s']:.1f}/s) |"
            )
    agreement, rss = results["agreement"], results["rss"]
    lines += [
        "",
        "Each HTTP case runs in short turns with both raw forwards (batch 1 for one client, "
        "batch 8 for eight; their medians are in the last column), because a shared machine's "
        "speed drifts within seconds; the ratios compare each case with its own column.",
        "",
        f"Agreement with `learn.predict` on {agreement['photos']} real photos (scikit-learn's "
        f"two sample photos at 12 MP, 640x480 and in crops; fp32 margins "
        f"{agreement['margin_range'][0]:.2f}-{agreement['margin_range'][1]:.2f}): the same top "
        f"label on {agreement['top1_same']} of {agreement['photos']} ({agreement['label_changes']}"
        f" changed of the {agreement['decided']} with a margin over {MARGIN}); probabilities "
        f"differ by {agreement['largest_difference']:.4f} at most (bound {BOUND}).",
        "",
    ]
    peers = results["peers"]
    if "skipped" in peers:
        lines += [f"Peers: not measured ({peers['skipped']}).", ""]
    else:
        lines += [
            "Peers on the same model, photos and load, each in turns with this app at the same "
            "load (the last columns):",
            "",
            "| peer | photo, clients | p50 ms | p95 ms | per second | errors | this app beside "
            "it: p50 ms, per second | ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for name, row in peers.items():
            if "failed" in row:
                lines.append(f"| {name} | could not be measured: {row['failed']} | | | | | | |")
                continue
            for case, pair in row.items():
                if case == "start_s":
                    continue
                theirs, ours = pair["peer"], pair["ours"]
                lines.append(
                    f"| {name} | {case} | {theirs['p50_ms']:.0f} | {theirs['p95_ms']:.0f} | "
                    f"{theirs['per_s']:.1f} | {theirs['errors']} | {ours['p50_ms']:.0f}, "
                    f"{ours['per_s']:.1f} | {ours['per_s'] / max(theirs['per_s'], 1e-9):.1f} |"
                )
        lines.append("")
    lines += [
        f"Worker RSS over {rss['requests']} requests ({rss['mix']}), sampled every 100: "
        f"{rss['before_mb']:.1f} MB at the start, {rss['after_mb']:.1f} MB at the end, between "
        f"{rss['min_mb']:.1f} and {rss['max_mb']:.1f}; growth (mean of the last quarter of the "
        f"samples minus mean of the first) {rss['growth_mb']:+.1f} MB.",
        "",
        "Worker CPU time per request, all cores together, while the clients ran: the model's "
        "threads and the rest (receiving, parsing, decoding, resizing, answering). With 8 "
        "clients the cores are saturated, so throughput is at most cores / (the fastest raw "
        "forward's CPU per image + the rest), the last column.",
        "",
        "| case | model's threads | the rest | fastest raw forward CPU per image | most "
        "requests/s these cores allow (over eager fp32 batch 8) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for photo, by_clients in results["http"].items():
        for clients, row in by_clients.items():
            ceiling = row["ceiling_per_s"]
            shown = (
                f"{ceiling:.1f} ({ceiling / row['limit_per_s']:.2f})"
                if clients != "1" and ceiling
                else ""
            )
            lines.append(
                f"| {photo}, {clients} clients | {row['model_cpu_ms']:.1f} ms | "
                f"{row['other_cpu_ms']:.1f} ms | {row['forward_cpu_ms']:.1f} ms "
                f"(batch {row['limit_batch']}) | {shown} |"
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
    parser.add_argument(
        "--peer-requests",
        type=int,
        default=48,
        help="requests per peer case (peer x photo x clients), and as many to this app beside "
        "it; 0 leaves the peers out; default 48",
    )
    parser.add_argument(
        "--peers-python",
        type=Path,
        default=PEERS_PYTHON,
        help="the Python of the peers' environment (bench/requirements-peers.txt); default "
        f"{PEERS_PYTHON.relative_to(ROOT)}",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument("--note", default="", help="a remark for the record (e.g. machine busy)")
    parser.add_argument(
        "--record", action="store_true", help=f"append the report to {RESULTS.relative_to(ROOT)}"
    )
    return parser.parse_args(argv)


def measure_http(
    server: LiveServer,
    photos: dict[str, bytes],
    requests: int,
    raws: dict[str, RawForward],
    threads: int,
) -> tuple[dict, int]:
    """p50, p95 and throughput for each photo at 1 and 8 clients, each compared with both raw
    forwards (batch 1 for one client, batch 8 for eight: eager fp32 and the fastest raw path)
    measured in turns with it, and the worker's CPU time per request."""
    results, errors = {}, 0
    worker = worker_of(server)
    for name, data in photos.items():
        results[name] = {}
        for clients in CLIENT_COUNTS:
            size = 1 if clients == 1 else 8
            run_clients(server.port, [data], clients, 2 * clients)  # warm the connections
            # short turns: a shared machine's speed drifts within seconds, and each turn of
            # requests is compared with raw forwards measured right beside it
            turn = 10 if clients == 1 else 6 * clients
            load, cpu = Load(), WorkerCpu(worker, threads)
            limits: dict[str, list[float]] = {path: [] for path in raws}
            for _ in range(max(1, round(requests / turn))):
                for path, raw in raws.items():
                    limits[path].append(
                        raw.measure(size, min_calls=3 if size == 1 else 2, min_seconds=0.2)
                    )
                with cpu.counting():
                    part = run_clients(server.port, [data], clients, turn)
                load.latencies += part.latencies
                load.errors += part.errors
                load.seconds += part.seconds
            summary = results[name][str(clients)] = load.summary()
            limit, fast = (statistics.median(limits[path]) for path in ("eager", "fast"))
            summary.update(
                limit_batch=size,
                limit_ms=limit * 1000,
                limit_per_s=size / limit,
                fast_ms=fast * 1000,
                fast_per_s=size / fast,
            )
            model_cpu, other_cpu = cpu.per_request(len(load.latencies) + len(load.errors))
            # on the CPU, with the cores saturated, throughput is cores / CPU per request: even
            # if the model cost no more than the fastest raw forward, the rest caps the ratio
            # (on a GPU the forward's cost is not CPU time, so there is no such ceiling)
            forward_cpu = raws["fast"].cpu_per_image(size)
            on_cpu = server_device(server) == "cpu"
            summary.update(
                model_cpu_ms=model_cpu * 1000,
                other_cpu_ms=other_cpu * 1000,
                forward_cpu_ms=forward_cpu * 1000,
                # the most requests per second these cores can serve, and that over eager fp32
                ceiling_per_s=available_cores() / (forward_cpu + other_cpu) if on_cpu else None,
            )
            errors += len(load.errors)
            print(
                f"HTTP {name}, {clients} client(s): p50 {summary['p50_ms']:.1f} ms, p95 "
                f"{summary['p95_ms']:.1f} ms, {summary['per_s']:.1f}/s, "
                f"{summary['errors']} errors; raw batch-{size} forward in turns with it: eager "
                f"fp32 {limit * 1000:.1f} ms, fastest {fast * 1000:.1f} ms; worker CPU per "
                f"request: model {model_cpu * 1000:.1f} ms, the rest {other_cpu * 1000:.1f} ms",
                flush=True,
            )
            if load.errors:
                print("  first error:", load.errors[0], flush=True)
    return results, errors


def agreement_photos() -> dict[str, bytes]:
    """Real photos to hold the served answers to learn.predict: both sample photos whole, at
    12 MP and 640x480, and crops of each at several places and sizes (quality-90 JPEGs)."""
    photos = {}
    for name in PHOTO_NAMES:
        stem = Path(name).stem
        photos[f"{stem} 12MP"] = photo_jpeg(name, TWELVE_MP)
        photos[f"{stem} 640x480"] = photo_jpeg(name, VGA)
        photo = sample_photo(name)
        for index, (left, top, side) in enumerate(
            [(0, 0, 427), (142, 0, 427), (60, 40, 300), (250, 100, 250), (20, 200, 220)]
        ):
            crop = photo.crop((left, top, left + side, top + side))
            buffer = io.BytesIO()
            crop.save(buffer, "JPEG", quality=90)
            photos[f"{stem} crop {index}"] = buffer.getvalue()
    return photos


def measure_agreement(server: LiveServer, model_path: Path) -> dict:
    """The served probabilities against `learn.predict(PILImage.create(bytes))` on real photos:
    top-1 agreement, and the largest probability difference (BOUND is the documented one)."""
    learner = load_export(model_path)
    learner.remove_cb(ProgressCallback)
    classes = [str(label) for label in learner.dls.vocab]
    expected, served = [], []
    for data in agreement_photos().values():
        expected.append(learner.predict(PILImage.create(data))[2].float())
        # a connection per photo: learn.predict can outlast gunicorn's keep-alive
        connection = http.client.HTTPConnection(HOST, server.port, timeout=120)
        body, content_type = multipart(data)
        connection.request(
            "POST", "/api/predict", body=body, headers={"Content-Type": content_type}
        )
        answer = json.loads(connection.getresponse().read())
        connection.close()
        served.append(torch.tensor([answer["probabilities"][label] for label in classes]))
    reference, candidate = torch.stack(expected), torch.stack(served)
    agreement = compare(reference, candidate)
    same = int((reference.argmax(1) == candidate.argmax(1)).sum())
    top2 = reference.topk(min(2, len(classes)), dim=1).values
    margins = top2[:, 0] - top2[:, -1]
    result = {
        "photos": agreement.images,
        "top1_same": same,
        "largest_difference": agreement.largest_difference,
        "decided": agreement.decided,
        "label_changes": agreement.label_changes,
        "margin_range": [float(margins.min()), float(margins.max())],
    }
    print(
        f"agreement with learn.predict on {result['photos']} real photos: top label the same on "
        f"{same}, {agreement.label_changes} changed of {agreement.decided} with a margin over "
        f"{MARGIN}; probabilities differ by {agreement.largest_difference:.4f} at most",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- the peers


class PeerServer:
    """A peer serving the model on 127.0.0.1, in its own process group (LitServe and Gradio
    start helper processes), stopped with all of them."""

    def __init__(self, peer: Peer, python: Path, model: Path, workdir: Path):
        self.peer, self.port = peer, free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        environment = {
            **os.environ,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_TEMP_DIR": str(workdir / "gradio"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            peer.command(str(python), model, self.port, workdir),
            cwd=workdir,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 300) -> PeerServer:
        """Block until the peer answers its ready path."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.peer.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
                connection.request("GET", self.peer.ready_path)
                return connection.getresponse().status == 200
            except (OSError, http.client.HTTPException):
                return False

        wait_until(ready, timeout, every=0.5, message=f"{self.peer.name} not ready in {timeout} s")
        return self

    def stop(self) -> None:
        """Stop the peer and every process it started."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def measure_peers(
    server: LiveServer, photos: dict[str, bytes], model: Path, python: Path, requests: int
) -> dict:
    """Each peer on the same model, photos and load, in turns with this app at the same load:
    p50, p95, throughput and errors of both, per photo and client count."""
    if not python.exists():
        print(f"peers not measured: {python} does not exist (see bench/requirements-peers.txt)")
        return {"skipped": f"no peers environment at {python.relative_to(ROOT)}"}
    results: dict = {}
    for peer in PEERS:
        started = time.monotonic()
        live = PeerServer(peer, python, model, OUT / "peers" / peer.script.removesuffix(".py"))
        try:
            live.wait_ready()
            results[peer.name] = row = {"start_s": time.monotonic() - started}
            for name, data in photos.items():
                for clients in CLIENT_COUNTS:
                    turn = 6 if clients == 1 else 3 * clients
                    theirs, ours = Load(), Load()
                    run_clients(live.port, [data], clients, clients, peer.sender)  # warm up
                    for _ in range(max(1, round(requests / turn))):
                        for load, port, make in (
                            (theirs, live.port, peer.sender),
                            (ours, server.port, ours_sender),
                        ):
                            part = run_clients(port, [data], clients, turn, make)
                            load.latencies += part.latencies
                            load.errors += part.errors
                            load.seconds += part.seconds
                    row[f"{name} {clients}"] = {"peer": theirs.summary(), "ours": ours.summary()}
                    peer_row, ours_row = theirs.summary(), ours.summary()
                    print(
                        f"{peer.name}, {name}, {clients} client(s): p50 "
                        f"{peer_row['p50_ms']:.0f} ms, {peer_row['per_s']:.1f}/s, "
                        f"{peer_row['errors']} errors; this app beside it: p50 "
                        f"{ours_row['p50_ms']:.0f} ms, {ours_row['per_s']:.1f}/s",
                        flush=True,
                    )
                    if theirs.errors:
                        print("  first error:", theirs.errors[0], flush=True)
        except (RuntimeError, AssertionError) as error:
            results[peer.name] = {"failed": str(error)[:300]}
            print(f"{peer.name} could not be measured: {error}", flush=True)
        finally:
            live.stop()
    return results


def measure_rss(server: LiveServer, photos: dict[str, bytes], requests: int) -> dict:
    """The worker's resident memory over `requests` more requests, sampled every 100.

    glibc's allocator keeps or returns freed memory as it sees fit, so a single sample swings
    by tens of MB (a batch of 8 holds about 100 MB of activations for a moment); a leak shows
    as a rise from the first samples to the last, so growth compares their means.
    """
    worker = worker_of(server)
    # mostly small photos so 2,000 requests fit the time budget; 1 in 10 is a 12 MP one
    mixed = [photos["640x480"]] * 9 + [photos["12MP"]]
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


def measure_backends(model: Path, rounds: int = 4) -> dict:
    """Every backend and precision (bench.raw.PATHS), each in a process of its own, in turns:
    ms at batch 1 and per image at batch 8, how far logits and probabilities are from eager
    fp32 (issue 13's table), and what building each cost (the ONNX export included)."""
    workers = {}
    for path in PATHS:
        try:
            workers[path] = RawForward(model, path)
        except (RuntimeError, ValueError) as error:
            print(f"{path}: not measured ({error})", flush=True)
    try:
        for _ in range(rounds):  # in turns, so the machine's drift favours none of them
            for worker in workers.values():
                worker.measure(1, 3, 0.3)
                worker.measure(8, 2, 0.3)
    finally:
        for worker in workers.values():
            worker.stop()
    table = {}
    for path, worker in workers.items():
        summary = worker.summary()
        table[path] = {
            **{key: worker.info.get(key) for key in ("logits_diff", "logit_scale")},
            "probability_diff": worker.info["probability_diff"],
            "build_s": worker.info["build_s"],
            "export_s": worker.info.get("export_s"),
            "batch1_ms": summary["1"]["ms"],
            "batch8_ms_per_image": summary["8"]["ms_per_image"],
        }
        print(
            f"{path}: batch 1 {table[path]['batch1_ms']:.1f} ms, batch 8 "
            f"{table[path]['batch8_ms_per_image']:.1f} ms/image, logits within "
            f"{worker.info['logits_diff']:.3g} of eager fp32 (largest "
            f"{worker.info['logit_scale']:.1f})",
            flush=True,
        )
    return {"paths": table}


def server_device(server: LiveServer) -> str:
    """The device the app's worker serves on (its /healthz)."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    connection.request("GET", "/healthz")
    device = json.loads(connection.getresponse().read())["device"]
    connection.close()
    return device


def served_with(server: LiveServer) -> dict:
    """What the app's worker chose and what loading cost, from its log."""
    text = server.log()
    serving = re.search(r"Serving in (\S+ \S+), ([\w-]+), with (\d+) thread", text)
    loaded = re.search(r"Loaded .* in ([\d.]+) s", text)
    chosen = re.search(r"Serving with .*?; chosen in ([\d.]+) s(?:, ONNX export ([\d.]+) s)?", text)
    return {
        "runtime": serving.group(1) if serving else "unknown",
        "layout": serving.group(2) if serving else "unknown",
        "threads": int(serving.group(3)) if serving else 0,
        "load_s": float(loaded.group(1)) if loaded else None,
        "choice_s": float(chosen.group(1)) if chosen else None,
        "export_s": float(chosen.group(2)) if chosen and chosen.group(2) else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the report."""
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    model_path = (args.model or build_model(OUT / MODEL_FOLDER)).resolve()
    photos = {"12MP": photo_jpeg("china.jpg", TWELVE_MP), "640x480": photo_jpeg("china.jpg", VGA)}
    print(
        f"model {model_path}; photos: 12MP {len(photos['12MP']):,} bytes, 640x480 "
        f"{len(photos['640x480']):,} bytes",
        flush=True,
    )

    # both limits: the learner's model alone in eager fp32 (what the app ran before issue 13),
    # and on the fastest raw path, with the threads and layout of the app's worker
    threads = torch_threads_for(workers=1)
    torch.set_num_threads(threads)
    device = choose_device("auto").device
    eager = Classifier(load_export(model_path), device, model_path)
    eager.prepare_batch([eager.preprocess(sample_photo("china.jpg"))])  # the layout probe
    baseline = measure_learn_predict(model_path, photos)
    for name, row in baseline.items():
        print(f"learn.predict, {name}: {row['ms']:.1f} ms", flush=True)
    backends = measure_backends(model_path)
    raws = {"eager": RawForward(model_path, "eager"), "fast": RawForward(model_path, "fast")}
    print(f"fastest raw path: {raws['fast'].info['summary']}", flush=True)
    server = LiveServer(model_path, OUT, port=args.port)
    try:
        for path, raw in raws.items():
            for size in raw.batches:
                ms = raw.measure(size, 10, 3.0) * 1000
                print(f"raw forward ({path}), batch {size}: {ms:.1f} ms", flush=True)
        server.wait_ready(timeout=300)
        served = served_with(server)
        print(f"the app serves with {served['runtime']}", flush=True)
        http_results, errors = measure_http(server, photos, args.requests, raws, threads)
        agreement = measure_agreement(server, model_path)
        peers = (
            measure_peers(server, photos, model_path, args.peers_python, args.peer_requests)
            if args.peer_requests
            else {"skipped": "--peer-requests 0"}
        )
        rss = measure_rss(server, photos, args.rss_requests)
    finally:
        server.stop()
        for raw in raws.values():
            raw.stop()

    results = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "model": str(
            model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path
        ),
        "input_size": eager.input_size,
        "device": str(device),
        "served": served,
        "chosen_here": {
            "runtime": raws["fast"].info["runtime"],
            "total_s": raws["fast"].info["choice_s"],
            "export_s": raws["fast"].info["export_s"],
        },
        "threads": threads,
        "layout": "channels-last" if eager.channels_last else "contiguous",
        "forward": {path: raw.summary() for path, raw in raws.items()},
        "backends": backends,
        "baseline": baseline,
        "http": http_results,
        "agreement": agreement,
        "peers": peers,
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
