"""A fleet on one machine, with the real parts: Debian's nginx (deploy/nginx/seafront.conf)
round-robin in front of two `python application.py` replicas of two workers each, sharing one
Debian redis-server, a secret key and a folder of models and uploads, all on 127.0.0.1.

The tests run in order on one fleet: the page end to end, the CSRF token, the metrics, a model
replaced, Redis hung and stopped, a replica killed under load, and the last replica drained."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from webapp.result_store import UNAVAILABLE

from .support import (
    RENAMED_CLASSES,
    LiveServer,
    NginxServer,
    RedisServer,
    hidden_value,
    image_src,
    read_csrf_token,
    wait_until,
)

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(240)]
WORKERS = 2
DRAIN_SECONDS = 5.0  # long enough to see /readyz go false on a busy 2-core machine


@dataclass
class Fleet:
    """What the tests reach: nginx, the replicas, Redis and the shared folders."""

    nginx: NginxServer
    replicas: list[LiveServer]
    redis: RedisServer
    model: Path
    uploads: Path


@pytest.fixture(scope="module")
def fleet(model_path, tmp_path_factory):
    """nginx, two replicas and Redis, started once for this module and stopped at its end."""
    root = tmp_path_factory.mktemp("fleet")
    model = root / "models" / "export.pkl"
    model.parent.mkdir()
    shutil.copyfile(model_path, model)
    uploads = root / "uploads"
    (root / "redis").mkdir()
    redis_server = RedisServer(root / "redis").start()
    shared = {
        "SEAFRONT_REDIS_URL": redis_server.url,
        "SEAFRONT_REDIS_TIMEOUT": "0.3",
        "SEAFRONT_SECRET_KEY": secrets.token_hex(32),
        "SEAFRONT_UPLOAD_FOLDER": str(uploads),
        "SEAFRONT_TRUSTED_PROXIES": "1",
        "SEAFRONT_RATE_LIMIT": "100000/minute",
        "SEAFRONT_MODEL_RELOAD_INTERVAL": "0.2",
        "SEAFRONT_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SEAFRONT_ACCESS_LOG": "json",
        "SEAFRONT_TORCH_THREADS": "1",
    }
    replicas = []
    nginx = None
    try:
        for index in range(2):
            workdir = root / f"replica{index}"
            workdir.mkdir()
            replicas.append(
                LiveServer(model, workdir, "--workers", str(WORKERS), "--threads", "4", env=shared)
            )
        for replica in replicas:
            replica.wait_ready(timeout=120)
        (root / "nginx").mkdir()
        nginx = NginxServer(root / "nginx", [f"127.0.0.1:{r.port}" for r in replicas]).start()
        yield Fleet(nginx, replicas, redis_server, model, uploads)
    finally:
        if nginx:
            nginx.stop()
        for replica in replicas:  # all at once: each takes seconds to stop
            replica.process.terminate()
        for replica in replicas:
            replica.stop()
        redis_server.stop()


def post_photo(session: requests.Session, url: str, photo: bytes, token: str) -> requests.Response:
    """The page's form, posted without JavaScript (no redirect followed)."""
    return session.post(
        f"{url}/",
        data={"csrf_token": token},
        files={"file": ("photo.png", photo, "image/png")},
        allow_redirects=False,
        timeout=30,
    )


def predict(url: str, photo: bytes, timeout: float = 30) -> requests.Response:
    """POST /api/predict with the photo as the body."""
    return requests.post(
        f"{url}/api/predict", data=photo, headers={"Content-Type": "image/png"}, timeout=timeout
    )


def test_the_page_without_javascript_works_end_to_end_across_both_replicas(fleet, png_pictures):
    session, url, upstreams = requests.Session(), fleet.nginx.url, []

    def seen(answer: requests.Response) -> requests.Response:
        upstreams.append(answer.headers["X-Upstream"])
        return answer

    token = read_csrf_token(seen(session.get(f"{url}/", timeout=30)).text)
    posted = seen(post_photo(session, url, png_pictures["mod0"], token))
    assert posted.status_code == 302, posted.text
    page = seen(session.get(f"{url}/", timeout=30)).text
    assert "That picture belongs to mod (" in page
    assert image_src(page, "result-photo").startswith("data:image/jpeg;base64,")
    form = {"csrf_token": hidden_value(page, "csrf_token"), "result": hidden_value(page, "result")}
    why = seen(session.post(f"{url}/why", data=form, allow_redirects=False, timeout=30))
    assert why.status_code == 302 and why.headers["Location"] == f"/#why-{form['result']}"
    page = seen(session.get(f"{url}/", timeout=30)).text
    assert (image_src(page, "result-heatmap") or "").startswith("data:image/jpeg;base64,")
    said = session.post(
        f"{url}/feedback", data={**form, "label": "rocker"}, allow_redirects=False, timeout=30
    )
    assert seen(said).status_code == 302
    assert "You said it is a rocker" in seen(session.get(f"{url}/", timeout=30)).text
    assert len(list((fleet.uploads / "feedback" / "rocker").glob("*.jpg"))) == 1
    # round-robin: each step was answered by the replica the step before it was not
    assert len(set(upstreams)) == 2
    assert all(a != b for a, b in zip(upstreams, upstreams[1:], strict=False))


def test_a_csrf_token_from_one_replica_is_accepted_by_the_other(fleet, png_pictures):
    first, second = fleet.replicas
    session = requests.Session()
    token = read_csrf_token(session.get(f"{first.url}/", timeout=30).text)
    answer = post_photo(session, second.url, png_pictures["rocker1"], token)
    assert answer.status_code == 302, answer.text
    assert "That picture belongs to rocker (" in session.get(f"{first.url}/", timeout=30).text


def scrape(replica: LiveServer) -> dict[tuple[str, tuple], float]:
    """One replica's /metrics: {(sample name, sorted labels): value}."""
    text = requests.get(f"{replica.url}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def pids_that_predicted(replica: LiveServer) -> set[int]:
    """The worker processes whose JSON access log shows a prediction."""
    return {
        int(pid)
        for pid in re.findall(r'"route": "/api/predict", [^\n]*"pid": (\d+)', replica.log())
    }


def test_each_replicas_metrics_add_up_across_its_workers(fleet, png_pictures):
    for replica in fleet.replicas:
        before, sent = scrape(replica), 0
        with ThreadPoolExecutor(4) as pool:
            # until both workers have answered some (which one takes a connection is the kernel's)
            while len(pids_that_predicted(replica)) < WORKERS or sent < 8:
                statuses = list(pool.map(predict, [replica.url] * 4, [png_pictures["mod1"]] * 4))
                assert [answer.status_code for answer in statuses] == [200] * 4
                sent += 4
                assert sent <= 200, "one worker took every connection"
        after = scrape(replica)
        route = {"route": "/api/predict", "method": "POST", "status": "200"}
        assert (
            total(after, "seafront_requests_total", **route)
            - total(before, "seafront_requests_total", **route)
            == sent
        )
        # every prediction was in exactly one forward pass and was decoded once
        assert (
            total(after, "seafront_batch_size_sum") - total(before, "seafront_batch_size_sum")
            == sent
        )
        assert (
            total(after, "seafront_decode_seconds_count")
            - total(before, "seafront_decode_seconds_count")
            == sent
        )
        assert total(after, "seafront_model_info") == WORKERS
        assert total(after, "seafront_model_loads_total", kind="start", outcome="ok") == WORKERS
        assert total(after, "seafront_request_seconds_count", route="/api/predict") >= sent


def sha256_served(replica: LiveServer) -> dict[str, float]:
    """{sha256: live workers serving it} from the replica's metrics."""
    return {
        dict(labels)["sha256"]: value
        for (name, labels), value in scrape(replica).items()
        if name == "seafront_model_info" and value
    }


def test_a_model_replaced_on_the_shared_folder_is_picked_up_by_both_replicas(
    fleet, renamed_model_path, png_pictures
):
    import hashlib

    new = hashlib.sha256(renamed_model_path.read_bytes()).hexdigest()
    staging = fleet.model.with_name(".export.pkl.new")
    shutil.copyfile(renamed_model_path, staging)
    os.replace(staging, fleet.model)

    def all_workers_switched() -> bool:
        with ThreadPoolExecutor(8) as pool:  # a worker looks at the file when a request comes
            list(pool.map(lambda _: predict(fleet.nginx.url, png_pictures["mod0"]), range(8)))
        return all(sha256_served(replica) == {new: WORKERS} for replica in fleet.replicas)

    wait_until(all_workers_switched, 90, every=0.2, message="not every worker reloaded")
    for replica in fleet.replicas:
        assert predict(replica.url, png_pictures["mod0"]).json()["label"] in RENAMED_CLASSES
        assert total(scrape(replica), "seafront_model_loads_total", kind="reload") == WORKERS


def timed(call) -> tuple[requests.Response, float]:
    """An answer and the seconds it took."""
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


@pytest.mark.parametrize("outage", ["hung", "stopped"])
def test_with_redis_hung_or_stopped_the_page_says_so_and_everything_else_works(
    fleet, png_pictures, outage
):
    url, session = fleet.nginx.url, requests.Session()
    token = read_csrf_token(session.get(f"{url}/", timeout=30).text)
    assert post_photo(session, url, png_pictures["rocker0"], token).status_code == 302
    kept = session.get(f"{url}/", timeout=30).text  # a result kept while Redis still answered
    form = {"csrf_token": hidden_value(kept, "csrf_token"), "result": hidden_value(kept, "result")}
    if outage == "hung":
        fleet.redis.pause()
    else:
        fleet.redis.stop()
    try:
        posted, seconds = timed(lambda: post_photo(session, url, png_pictures["mod2"], token))
        assert posted.status_code == 302
        page = session.get(f"{url}/", timeout=30)
        # the model was replaced above: its classes are now punk and teddy
        assert page.status_code == 200 and "That picture belongs to " in page.text
        assert UNAVAILABLE.split(" (")[0].replace('"', "&#34;") in page.text
        why = session.post(f"{url}/why", data=form, timeout=30)  # follows the redirect
        assert why.status_code == 200 and "cannot be used just now" in why.text
        feedback = session.post(
            f"{url}/feedback",
            data={**form, "label": RENAMED_CLASSES[0]},
            headers={"Accept": "application/json"},
            timeout=30,
        )
        assert feedback.status_code == 503 and "cannot be used just now" in feedback.json()["error"]
        api, api_seconds = timed(lambda: predict(url, png_pictures["mod2"]))
        assert api.status_code == 200
        print(f"Redis {outage}: form post {seconds:.2f} s, API {api_seconds:.2f} s")
    finally:
        if outage == "hung":
            fleet.redis.resume()
    logs = "".join(replica.log() for replica in fleet.replicas)
    assert "Redis did not answer" in logs and "Traceback" not in logs


def kill_replica(replica: LiveServer) -> None:
    """SIGKILL the replica's master and workers at once, as a crashed machine would go."""
    master = psutil.Process(replica.process.pid)
    for process in [*master.children(recursive=True), master]:
        process.kill()
    replica.process.wait(timeout=10)


# an answer cut short: the replica died between gunicorn's two writes, its headers and its body,
# and nginx had passed the headers on, so no proxy could send the request elsewhere
CUT_SHORT = -1
CLIENTS = 8


def test_killing_a_replica_mid_load_loses_no_request_nginx_could_retry(fleet, png_pictures):
    victim = fleet.replicas[1]
    photos = [png_pictures[name] for name in png_pictures] * 10
    answered: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(photo: bytes) -> int:
        try:
            status = predict(fleet.nginx.url, photo, timeout=60).status_code
        except requests.exceptions.ChunkedEncodingError:  # headers came, the body never did
            status = CUT_SHORT
        except requests.RequestException as error:
            status = 0
            failures.append(repr(error))
        with lock:
            answered.append(status)
            if len(answered) == 30:
                kill_replica(victim)
        return status

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(one, photos))
    assert victim.process.poll() is not None
    lost = [status for status in statuses if status not in (200, CUT_SHORT)]
    cut = statuses.count(CUT_SHORT)
    print(f"killed a replica mid-load: {len(lost)} of {len(statuses)} lost, {cut} cut short")
    assert lost == [], failures
    assert cut < CLIENTS  # only answers in flight on the victim when it died: one a client at most


def test_sigterm_drains_readiness_first_and_answers_what_it_accepted(fleet, png_pictures):
    replica = fleet.replicas[0]
    assert requests.get(f"{replica.url}/readyz", timeout=10).json() == {"ready": True}
    with ThreadPoolExecutor(8) as pool:
        in_flight = [pool.submit(predict, replica.url, png_pictures["rocker2"]) for _ in range(8)]
        replica.process.send_signal(signal.SIGTERM)

        def not_ready() -> dict | None:
            answer = requests.get(f"{replica.url}/readyz", timeout=10)
            return answer.json() if answer.status_code == 503 else None

        readiness = wait_until(not_ready, DRAIN_SECONDS, message="/readyz never went false")
        assert readiness["ready"] is False and "draining" in readiness["reason"]
        during = predict(replica.url, png_pictures["mod0"])  # still served while draining
        answers = [future.result() for future in in_flight]
    assert during.status_code == 200
    assert [answer.status_code for answer in answers] == [200] * 8
    assert replica.process.wait(timeout=30) == 0
    assert "Draining: /readyz answers 503" in replica.log()
