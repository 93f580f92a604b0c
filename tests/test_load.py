"""A bounded load test over real HTTP: 16 clients, 2,000 requests, good and bad files mixed.

Marked `load`: run with `pytest -m load`. It stops by itself (a fixed number of requests, each
with a timeout) and checks that nothing failed, every answer was the right one, the worker's
memory, open files and threads stayed bounded, and kept uploads stayed within their caps.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil
import pytest
import requests
from fastai.vision.core import PILImage

from classifier.decode import decode_image

from .hostile import hostile_files
from .support import MAX_PIXELS, LiveServer

pytestmark = [pytest.mark.load, pytest.mark.timeout(300)]

CLIENTS = 16
WARM_UP = 200
REQUESTS = 2000
MAX_FILES, MAX_BYTES = 40, 400_000
# what the worker may grow by under load, past its warmed-up state
RSS_GROWTH = 100 * 1024 * 1024
FD_GROWTH = 2 * CLIENTS + 16
THREAD_GROWTH = 4


@dataclass(frozen=True)
class Job:
    """One request of the mix: what to send and the answer it must get."""

    name: str
    data: bytes
    content_type: str
    status: int
    label: str | None


@pytest.fixture(scope="module")
def jobs(tiny_learner, png_pictures) -> list[Job]:
    """Good pictures (with the label learn.predict gives each) and bad files (with their status)."""
    good = {name: data for name, data in png_pictures.items()}
    good.update(
        {item.name: item.data for item in hostile_files() if item.status == 200 and item.label}
    )
    mix = []
    with tiny_learner.no_bar():
        for name, data in good.items():
            label = tiny_learner.predict(
                PILImage.create(decode_image(data, max_pixels=MAX_PIXELS))
            )[0]
            mix.append(Job(name, data, "image/png", 200, str(label)))
    mix += [
        Job(item.name, item.data, item.content_type, item.status, None)
        for item in hostile_files()
        if item.status != 200
    ]
    return mix


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    """The app as `python application.py` runs it, keeping uploads under small caps."""
    folder = tmp_path_factory.mktemp("load")
    live = LiveServer(
        model_path,
        folder,
        env={
            "SEAFRONT_KEEP_UPLOADS": "true",
            "SEAFRONT_UPLOAD_FOLDER": str(folder / "uploads"),
            "SEAFRONT_UPLOADS_MAX_FILES": str(MAX_FILES),
            "SEAFRONT_UPLOADS_MAX_BYTES": str(MAX_BYTES),
        },
    )
    live.uploads = folder / "uploads"
    try:
        yield live.wait_ready()
    finally:
        live.stop()


class Sampler:
    """Samples the worker's memory, open file descriptors and threads in the background."""

    def __init__(self, worker: psutil.Process, every: float = 0.2):
        self.worker, self.every = worker, every
        self.samples: list[tuple[int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int, int]:
        """(RSS bytes, open fds, threads) now."""
        with self.worker.oneshot():
            return (self.worker.memory_info().rss, self.worker.num_fds(), self.worker.num_threads())

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(self.sample())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> tuple[int, int, int]:
        """The largest of each measure over the samples."""
        return tuple(max(values) for values in zip(*self.samples, strict=True))


def run(server: LiveServer, jobs: list[Job], count: int) -> list[tuple[Job, int, dict]]:
    """Send `count` requests from CLIENTS threads, each with its own keep-alive session."""
    local = threading.local()

    def send(index: int) -> tuple[Job, int, dict]:
        job = jobs[(index * 7) % len(jobs)]  # 7 is coprime with the mix: every job comes up
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        if index % 2:
            answer = session.post(
                f"{server.url}/api/predict",
                data=job.data,
                headers={
                    "Content-Type": job.content_type
                    if job.content_type.startswith("image/")
                    else "image/jpeg"
                },
                timeout=60,
            )
        else:
            answer = session.post(
                f"{server.url}/api/predict",
                timeout=60,
                files={"file": (f"{job.name}.bin", job.data, job.content_type)},
            )
        return job, answer.status_code, answer.json()

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(send, range(count)))


def test_sixteen_clients_two_thousand_requests_nothing_fails_nothing_leaks(server, jobs):
    [worker] = psutil.Process(server.process.pid).children()
    run(server, jobs, WARM_UP)
    sampler = Sampler(worker)
    baseline = sampler.sample()
    started = time.monotonic()
    with sampler:
        results = run(server, jobs, REQUESTS)
    seconds = time.monotonic() - started
    time.sleep(1)
    after = sampler.sample()

    assert len(results) == REQUESTS
    wrong = [
        (job.name, status, body)
        for job, status, body in results
        if status != job.status or (job.label and body.get("label") != job.label)
    ]
    assert wrong == []
    assert not [status for _, status, _ in results if status >= 500]
    print(
        f"\n{REQUESTS} requests in {seconds:.1f} s ({REQUESTS / seconds:.0f}/s); worker "
        f"baseline/peak/after: RSS {baseline[0] >> 20}/{sampler.peak()[0] >> 20}/"
        f"{after[0] >> 20} MiB, fds {baseline[1]}/{sampler.peak()[1]}/{after[1]}, threads "
        f"{baseline[2]}/{sampler.peak()[2]}/{after[2]}"
    )

    peak_rss, peak_fds, peak_threads = sampler.peak()
    assert peak_rss < baseline[0] + RSS_GROWTH
    assert peak_fds < baseline[1] + FD_GROWTH and after[1] <= baseline[1] + 4
    assert peak_threads <= baseline[2] + THREAD_GROWTH and after[2] <= baseline[2] + 2

    kept = [path for path in server.uploads.iterdir() if path.is_file()]
    assert 0 < len(kept) <= MAX_FILES
    assert sum(path.stat().st_size for path in kept) <= MAX_BYTES
    assert all(re.fullmatch(r"[0-9a-f]{32}\.(png|jpeg|gif|webp)", path.name) for path in kept)

    assert requests.get(f"{server.url}/healthz", timeout=10).json()["model_loaded"]
    assert "Traceback" not in server.log()
