#!/usr/bin/env python
"""What the hostile uploads of issue 11 cost the server, measured over HTTP in one run.

    python -m bench.bounds                       # the tests' tiny model, built into bench/out/
    python -m bench.bounds --model models/export.pkl --record

It starts `python application.py --workers 1 --threads 8` on 127.0.0.1 and measures:

- CPU: 8 JPEG scan bombs (4000x4000 progressive, its smallest scan repeated 20,000 times,
  about 1 MB each) posted at once, and an ordinary 12 MP photo posted while they are in flight:
  the photo's answer time, and each bomb's status and time;
- memory: for each file that is tiny on disk but near the 50 MP limit (7000x7000: a 16-bit grey
  PNG, an RGBA PNG, a GIF, a float TIFF), 8 uploads at once: the worker's RSS before, at its
  peak (sampled every 20 ms) and after an idle pause, with each upload's status;
- containers: for each container bomb (millions of tiny parts that Pillow walks in Python: a
  TIFF of 1x1 tiles, JPEG comment segments or fill bytes, empty PNG chunks, GIF comment
  sub-blocks; a run-length BMP Pillow decodes in Python; the scan bomb behind one stray byte;
  EXIF blocks of millions of numbers that exif_transpose() unpacks when it turns a photo; PNG
  profile and text chunks that each inflate to 1 MB; JPEG EXIF and Photoshop segments),
  8 uploads at once (`--only TEXT`: only the bombs whose name has TEXT) and the ordinary
  photo 0.5 s later: statuses, times and the peak RSS.

The memory check runs once per server configuration in `--configs` (the app as shipped, and
without returning memory to the system), each on its own fresh server, so that the figures
stand side by side. Nothing leaves 127.0.0.1; every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

from bench.photos import TWELVE_MP, photo_jpeg
from tests import containers
from tests.imagemaker import encode
from tests.support import LiveServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
SIDE = 7000  # 49 MP: just under the 50 MP limit
IN_FLIGHT = 8
SCAN_REPEATS = 20_000
SCAN_START = b"\xff\xda"
MB = 1024 * 1024
MEASUREMENTS = ("cpu", "memory", "containers")
# server configurations for the memory check: a name and the environment it runs with
CONFIGS: dict[str, dict[str, str]] = {
    "as shipped": {},
    "no release": {"SEAFRONT_RELEASE_MEMORY": "false"},
}


# --------------------------------------------------------------------------- hostile files


def scan_bomb(size: tuple[int, int] = (4000, 4000), repeats: int = SCAN_REPEATS) -> bytes:
    """A progressive JPEG of `size` whose smallest scan is repeated `repeats` times."""
    gradient = np.add.outer(np.arange(size[1]) // 16, np.arange(size[0]) // 16) % 256
    image = Image.fromarray(gradient.astype(np.uint8)).convert("RGB")
    data = encode(image, "JPEG", progressive=True, quality=90)
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == SCAN_START]
    ends = [*starts[1:], len(data) - 2]
    # the scans' own bytes, header and entropy-coded data, up to the next marker segment
    scans = [data[start:end] for start, end in zip(starts, ends, strict=True)]
    smallest = min(scans, key=len)
    return data[:-2] + smallest * repeats + data[-2:]


def memory_files(side: int = SIDE) -> dict[str, tuple[str, bytes]]:
    """Files tiny on disk that claim side x side pixels: name -> (filename, bytes)."""
    size = (side, side)
    grey16 = Image.frombytes("I;16", size, bytes(2 * side * side))
    return {
        "16-bit grey PNG": ("grey16.png", encode(grey16, "PNG")),
        "RGBA PNG": ("rgba.png", encode(Image.new("RGBA", size, (9, 99, 199, 128)), "PNG")),
        "GIF": ("flat.gif", encode(Image.new("P", size, 3), "GIF")),
        "float TIFF": (
            "float.tif",
            encode(Image.new("F", size, 0.5), "TIFF", compression="tiff_adobe_deflate"),
        ),
    }


def behind_a_stray_byte(bomb: bytes) -> bytes:
    """`bomb` with a zero byte before its second scan, which libjpeg skips with a warning."""
    second = bomb.index(SCAN_START, bomb.index(SCAN_START) + 2)
    return bomb[:second] + b"\x00" + bomb[second:]


def container_bombs() -> dict[str, tuple[str, bytes]]:
    """Files of millions of tiny parts, each under the 20 MB limit: name -> (filename, bytes)."""
    return {
        "TIFF of 3,000,000 1x1 tiles": ("tiles.tif", containers.tiff_of_tiles(12_000, 250)),
        "JPEG of 4,000,000 comment segments": (
            "segments.jpg",
            containers.jpeg_with_segments(4_000_000),
        ),
        "JPEG of 16,000,000 fill bytes": ("fill.jpg", containers.jpeg_with_padding(16_000_000)),
        "JPEG of 300 full Photoshop segments": (
            "photoshop.jpg",
            containers.jpeg_with_photoshop_blocks(300),
        ),
        "JPEG of 300 full EXIF segments": ("exif.jpg", containers.jpeg_with_exif_segments(300)),
        "PNG of 1,300,000 empty chunks": ("chunks.png", containers.png_with_chunks(1_300_000)),
        "GIF of 8,000,000 comment sub-blocks": (
            "comment.gif",
            containers.gif_with_comment_blocks(8_000_000),
        ),
        "7000x7000 RLE8 BMP of one-pixel rows": (
            "rle.bmp",
            containers.bmp_rle8_of_short_rows(SIDE, SIDE),
        ),
        "scan bomb behind one stray byte": ("stray.jpg", behind_a_stray_byte(scan_bomb())),
        "PNG turned by a 15 MB EXIF block": (
            "exif.png",
            encode(Image.new("L", (64, 32)), "PNG", exif=containers.exif_block(6, 1_900_000)),
        ),
        "PNG of 60 MB of compressed text in 60 KB": (
            "text.png",
            containers.png_with_compressed_chunks(60),
        ),
        "PNG of 19,000 compressed ICC profiles": (
            "profiles.png",
            containers.png_with_compressed_chunks(19_000, "iCCP"),
        ),
        "TIFF whose EXIF directory holds 1,900,000 numbers": (
            "exif.tif",
            containers.tiff_with_exif_directory(1_900_000),
        ),
    }


# --------------------------------------------------------------------------- measuring


@dataclass
class Answer:
    """One upload's answer: status, seconds, and the error sentence if any."""

    status: int
    seconds: float
    sentence: str = ""


def post(url: str, filename: str, data: bytes, timeout: float = 300) -> Answer:
    """POST `data` to /api/predict as the file `filename` and time the answer."""
    start = time.perf_counter()
    try:
        answer = requests.post(
            f"{url}/api/predict", files={"file": (filename, data)}, timeout=timeout
        )
    except requests.RequestException as error:
        return Answer(0, time.perf_counter() - start, f"no answer: {error}")
    sentence = "" if answer.ok else answer.json().get("error", answer.text[:200])
    return Answer(answer.status_code, time.perf_counter() - start, sentence)


def workers_rss(server: LiveServer) -> int:
    """The RSS of the server's workers in bytes (a recycled worker is counted as it is now)."""
    total = 0
    for child in psutil.Process(server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # recycled since it was listed
            total += child.memory_info().rss
    return total


class PeakSampler:
    """Samples the workers' RSS every 20 ms in a thread; `.peak` is the largest seen."""

    def __init__(self, server: LiveServer):
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, workers_rss(self.server))

    def __enter__(self) -> PeakSampler:
        self.peak = workers_rss(self.server)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def at_once(send: Callable[[], Answer], count: int) -> list[Answer]:
    """`count` calls of `send` in parallel threads."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: send(), range(count)))


def started(model: Path, workdir: Path, env: dict[str, str]) -> LiveServer:
    """`python application.py` with 1 worker and 8 threads, as the issue measured it."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = LiveServer(model, workdir, "--workers", "1", "--threads", "8", env=env)
    return server.wait_ready(timeout=120)


def measure_cpu(server: LiveServer) -> dict:
    """8 scan bombs at once, and an ordinary 12 MP photo 0.5 s later."""
    bomb, photo = scan_bomb(), photo_jpeg("china.jpg", TWELVE_MP)
    post(server.url, "warm.jpg", photo)  # the first answer loads what the rest reuse
    run = measure_container(server, "bomb.jpg", bomb, photo)
    return {
        "bomb_bytes": len(bomb),
        "photo_bytes": len(photo),
        "ordinary": run["ordinary"],
        "bombs": run["answers"],
    }


def measure_container(server: LiveServer, filename: str, data: bytes, photo: bytes) -> dict:
    """8 uploads of `data` at once, and `photo` 0.5 s later: answers and the workers' peak RSS."""
    before = workers_rss(server)
    with PeakSampler(server) as sampler, ThreadPoolExecutor(IN_FLIGHT) as pool:
        bombs = [pool.submit(post, server.url, filename, data) for _ in range(IN_FLIGHT)]
        time.sleep(0.5)
        ordinary = post(server.url, "photo.jpg", photo)
        answers = [future.result() for future in bombs]
    return {
        "bytes": len(data),
        "before": before,
        "peak": sampler.peak,
        "ordinary": ordinary,
        "answers": answers,
    }


def measure_memory(server: LiveServer, filename: str, data: bytes, idle_s: float) -> dict:
    """8 uploads of `data` at once: RSS before, at the peak and after `idle_s` of idling."""
    before = workers_rss(server)
    with PeakSampler(server) as sampler:
        answers = at_once(lambda: post(server.url, filename, data), IN_FLIGHT)
    time.sleep(idle_s)
    return {
        "bytes": len(data),
        "before": before,
        "peak": sampler.peak,
        "after": workers_rss(server),
        "answers": answers,
    }


# --------------------------------------------------------------------------- the report


def statuses(answers: list[Answer]) -> str:
    """The statuses of `answers`, counted: "8 x 413"."""
    counts: dict[int, int] = {}
    for answer in answers:
        counts[answer.status] = counts.get(answer.status, 0) + 1
    return ", ".join(f"{n} x {status}" for status, n in sorted(counts.items()))


def seconds(answers: list[Answer]) -> str:
    """The median and slowest answer times of `answers`."""
    times = [answer.seconds for answer in answers]
    return f"median {statistics.median(times):.2f}, slowest {max(times):.2f}"


def report(results: dict, args: argparse.Namespace) -> str:
    """The run as Markdown: the machine, then one table per measurement."""
    load = os.getloadavg()
    only = f" --only {shlex.quote(args.only)}" if args.only else ""
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: bounds (`python -m bench.bounds "
        f"--measure {' '.join(args.measure)}{only}`)",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f}; model `{args.model_name}`; 1 worker, 8 threads; "
        f"commit {args.commit}",
        "",
    ]
    if "cpu" in results:
        lines += cpu_report(results["cpu"])
    if "memory" in results:
        lines += memory_report(results["memory"], args.idle)
    if "containers" in results:
        lines += containers_report(results["containers"])
    return "\n".join(lines)


def cpu_report(cpu: dict) -> list[str]:
    """The scan bombs' table."""
    return [
        f"CPU: {IN_FLIGHT} scan bombs ({cpu['bomb_bytes'] / MB:.1f} MB each, 4000x4000, smallest "
        f"scan x {SCAN_REPEATS:,}) at once, and a 12 MP photo "
        f"({cpu['photo_bytes'] / MB:.1f} MB) 0.5 s later:",
        "",
        "| upload | status | seconds |",
        "| --- | --- | --- |",
        f"| ordinary photo, while the bombs were in flight | {cpu['ordinary'].status} | "
        f"{cpu['ordinary'].seconds:.2f} |",
        f"| each bomb | {statuses(cpu['bombs'])} | {seconds(cpu['bombs'])} |",
        "",
        f'The bombs\' sentence: "{cpu["bombs"][0].sentence}"',
        "",
    ]


def memory_report(memory: dict[str, dict[str, dict]], idle: float) -> list[str]:
    """The near-50-megapixel files' table, one row per server configuration and file."""
    lines = [
        f"Memory: {IN_FLIGHT} uploads at once of each {SIDE}x{SIDE} file; the workers' RSS "
        f"before, at the peak (every 20 ms) and after {idle:g} s idle:",
        "",
        "| server | file | bytes | statuses | before MB | peak MB | after idle MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config, files in memory.items():
        for name, run in files.items():
            lines.append(
                f"| {config} | {name} | {run['bytes'] / 1024:.0f} KB | {statuses(run['answers'])}"
                f" | {run['before'] / MB:.0f} | {run['peak'] / MB:.0f} (+"
                f"{(run['peak'] - run['before']) / MB:.0f}) | {run['after'] / MB:.0f} |"
            )
    return [*lines, ""]


def containers_report(runs: dict[str, dict]) -> list[str]:
    """The container bombs' table, and each one's sentence."""
    lines = [
        f"Containers: {IN_FLIGHT} uploads at once of each file, and the 12 MP photo 0.5 s later; "
        "the workers' RSS before and at the peak (every 20 ms):",
        "",
        "| file | bytes | statuses | seconds | photo's status, seconds | before MB | peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['bytes'] / MB:.2f} MB | {statuses(run['answers'])} | "
            f"{seconds(run['answers'])} | {run['ordinary'].status}, "
            f"{run['ordinary'].seconds:.2f} | {run['before'] / MB:.0f} | "
            f"{run['peak'] / MB:.0f} (+{(run['peak'] - run['before']) / MB:.0f}) |"
        )
    lines.append("")
    lines += [f'- {name}: "{run["answers"][0].sentence}"' for name, run in runs.items()]
    return [*lines, ""]


def tiny_model() -> Path:
    """The tests' tiny model, trained once into bench/out/bounds-tiny/ (a few seconds)."""
    from tests.tinymodel import train_tiny_model, write_dataset

    folder = OUT / "bounds-tiny"
    export = folder / "export.pkl"
    if not export.exists():
        train_tiny_model(write_dataset(folder / "data"), export)
    return export


def git_commit() -> str:
    """The checkout's commit, with "+changes" when the tree differs from it."""

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True).stdout

    changed = "+changes" if git("status", "--porcelain", "--untracked-files=no").strip() else ""
    return git("rev-parse", "--short", "HEAD").strip() + changed


def measure(server: LiveServer, config: str, args: argparse.Namespace, results: dict) -> None:
    """Run on `server` what args.measure asks and results lacks yet, into `results`."""
    if "cpu" in args.measure and "cpu" not in results:
        results["cpu"] = measure_cpu(server)
        time.sleep(args.idle)
    if "containers" in args.measure and "containers" not in results:
        photo = photo_jpeg("china.jpg", TWELVE_MP)
        post(server.url, "warm.jpg", photo)
        results["containers"] = {}
        for name, (filename, data) in container_bombs().items():
            if args.only not in name:
                continue
            results["containers"][name] = measure_container(server, filename, data, photo)
            time.sleep(args.idle)
    if "memory" in args.measure:
        results.setdefault("memory", {})[config] = {
            name: measure_memory(server, filename, data, args.idle)
            for name, (filename, data) in memory_files().items()
        }


def main() -> None:
    """Measure and print (and with --record append to bench/RESULTS.md)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an export.pkl (default: the tests' tiny one)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idling before 'after'")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--measure", nargs="+", default=list(MEASUREMENTS), choices=MEASUREMENTS,
        help="what to measure (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--only", default="", metavar="TEXT", help="only the container bombs whose name has TEXT"
    )
    parser.add_argument("--record", action="store_true", help="append the report to RESULTS.md")
    args = parser.parse_args()
    model = args.model or tiny_model()
    args.model_name = str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model)
    args.commit = git_commit()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bounds-") as work:
        # the memory check runs on each configuration; the others on the first only
        configs = args.configs if "memory" in args.measure else args.configs[:1]
        for config in configs:
            server = started(model, Path(work) / config.replace(" ", "-"), CONFIGS[config])
            try:
                measure(server, config, args, results)
            finally:
                server.stop()
    text = report(results, args)
    print(text)
    if args.record:
        with RESULTS.open("a") as record:
            record.write("\n" + text)
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
