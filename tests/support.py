"""Helpers shared by the tests and bench/: a live server, waiting, free ports, CSRF tokens, the
page without JavaScript, a fake CUDA query and the app's settings. No fixtures here: those are
in conftest.py, and no test imports from conftest or from another test file."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image

from webapp import settings

from .imagemaker import encode, make_picture

ROOT = Path(__file__).resolve().parent.parent
MAX_PIXELS: int = settings.default("MAX_PIXELS")
# the tiny model exported again with other class names (CategoryMap sorts: "mod" becomes "punk",
# "rocker" "teddy"): a different model to swap in
RENAMED_CLASSES = ["punk", "teddy"]
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 20,
    every: float = 0.05,
    message: str | Callable[[], str] = "the condition never held",
) -> T:
    """Call `condition` until it returns something truthy, and return that; AssertionError with
    `message` (a string, or a function that makes one) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_with_host(url: str, host: str) -> int | None:
    """The status of GET `url` sent with `host` as its Host header; None while nothing listens."""
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def service_settings(model_path: Path, **overrides: Any):
    """The model layer's ServiceSettings for `model_path`: the app's defaults, on the CPU, with
    `overrides` (ServiceSettings field names, e.g. model_reload_interval=0.1)."""
    config = {
        "MODEL_PATH": str(model_path),
        "DEVICE": "cpu",
        **{name.upper(): value for name, value in overrides.items()},
    }
    return settings.service_settings(config)


def read_csrf_token(html: str) -> str:
    """The CSRF token of the form in a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class LiveServer:
    """`python application.py` in a subprocess, as the README starts it.

    Its instance folder (the secret key) is in `workdir`, never in the checkout.
    """

    def __init__(
        self,
        model: Path,
        workdir: Path,
        *args: str,
        env: dict | None = None,
        port: int | None = None,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        environment = {
            **os.environ,
            "SEAFRONT_INSTANCE_PATH": str(workdir / "instance"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "application.py"),
                "--port",
                str(self.port),
                "--model",
                str(model),
                *args,
            ],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> LiveServer:
        """Block until /healthz answers, or fail with the server's log."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).ok
            except (requests.ConnectionError, requests.Timeout):
                return False

        wait_until(
            ready,
            timeout,
            every=0.2,
            message=lambda: f"server not ready after {timeout} s:\n{self.log()}",
        )
        return self

    def log(self) -> str:
        """What the server has logged so far."""
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# --- the page without JavaScript ------------------------------------------------------------

DATA_URL = re.compile(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)")


def post_file(client, data: bytes, filename: str = "photo.png"):
    """Post `data` as multipart field `file`."""
    return client.post(
        "/api/predict",
        data={"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def upload(client, data: bytes, field: str = "file", filename: str = "photo.png"):
    """Read the page's CSRF token and post the form with `data` in `field`."""
    token = read_csrf_token(client.get("/").get_data(as_text=True))
    return client.post(
        "/",
        data={"csrf_token": token, field: (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def result_page(client, data: bytes) -> str:
    """Upload `data` and follow the redirect: the page that shows the result."""
    answer = upload(client, data)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client.get("/").get_data(as_text=True)


def hidden_value(html: str, name: str) -> str:
    """The value of the first hidden input called `name` (as the page renders it)."""
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden input {name!r} in the page"
    return match.group(1)


def decode_data_url(url: str) -> Image.Image:
    """The picture inside a JPEG data: URL."""
    match = DATA_URL.fullmatch(url)
    assert match, f"not a JPEG data: URL: {url[:40]}..."
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def image_src(html: str, css_class: str) -> str | None:
    """The src of the first <img> with `css_class`, or None when it has none."""
    tag = re.search(rf'<img class="{css_class}[^"]*"[^>]*>', html)
    assert tag, f"no <img class={css_class!r}> in the page"
    src = re.search(r'src="([^"]+)"', tag.group(0))
    return src.group(1) if src else None


# --- the page in a real browser --------------------------------------------------------------

# the app's own policy (webapp/security.py), laid over every page by the tests' route: inline
# script or style would show up as a console error
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
DESKTOP = {"width": 1000, "height": 900}


@dataclass
class Watched:
    """A page whose every request and console error is recorded."""

    page: Any
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """Nothing was asked of another host, nothing was refused by the CSP, no script error."""
        assert self.requests, "the route saw no requests"
        assert self.foreign == []
        assert self.problems == []


def open_watched(browser, base_url: str, path: str, csp: str, **options) -> tuple[Any, Watched]:
    """A fresh browser context with `base_url + path` open and watched: requests to any other
    host fail, each page is served under `csp`, console errors are recorded."""
    context = browser.new_context(**({"viewport": DESKTOP} | options))
    page = context.new_page()
    watched = Watched(page)
    host = urlsplit(base_url).netloc

    def route(route):
        request = route.request
        watched.requests.append(request.url)
        if urlsplit(request.url).netloc != host:
            watched.foreign.append(request.url)
            route.abort()
        elif request.resource_type == "document" and request.method == "GET":
            response = route.fetch(max_redirects=0)
            route.fulfill(
                response=response, headers={**response.headers, "content-security-policy": csp}
            )
        else:
            route.continue_()

    page.route("**/*", route)
    page.on(
        "console",
        lambda message: message.type == "error" and watched.problems.append(message.text),
    )
    page.on("pageerror", lambda error: watched.problems.append(str(error)))
    page.goto(base_url + path)
    return context, watched


def picture_png(label: str, size=(320, 240), seed: int = 5) -> bytes:
    """A photo of class `label` for the tiny model, as PNG bytes."""
    return encode(make_picture(label, np.random.default_rng(seed), size))


def natural_size(locator) -> tuple[int, int]:
    """The loaded size of an <img>, (0, 0) when it shows nothing."""
    return tuple(locator.evaluate("image => [image.naturalWidth, image.naturalHeight]"))


def classify(page) -> None:
    """Press Classify and wait for the result card the script fills in."""
    page.get_by_role("button", name="Classify").click()
    page.locator("#result .result-label").filter(has_text="o").wait_for()


# --- a fake torch.cuda ------------------------------------------------------------------------

TORCH_2_14_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


class FakeCudaQuery:
    """Stands in for torch.cuda: a list of (name, capability) GPUs and the build's arch list."""

    def __init__(self, gpus: list[tuple[str, tuple[int, int]]], archs=TORCH_2_14_ARCHS):
        self.gpus, self.archs = gpus, archs

    def device_count(self):
        """How many GPUs the fake has."""
        return len(self.gpus)

    def name(self, index):
        """GPU `index`'s name."""
        return self.gpus[index][0]

    def capability(self, index):
        """GPU `index`'s compute capability."""
        return self.gpus[index][1]

    def arch_list(self):
        """The fake build's architectures."""
        return self.archs


NO_GPU: list = []
TESLA_M60 = [("Tesla M60", (5, 2))]
TESLA_T4 = [("Tesla T4", (7, 5))]
H100 = [("NVIDIA H100", (9, 0))]
TWO_A10G = [("NVIDIA A10G", (8, 6)), ("NVIDIA A10G", (8, 6))]


# --- servers a fleet needs: Debian's redis-server and nginx, on 127.0.0.1 ----------------------


class RedisServer:
    """Debian's `redis-server` on a free port of 127.0.0.1, keeping nothing on disk."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING."""
        import redis

        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, 20, message="redis-server did not start")
        return self

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections open, but no answer ever comes: a hung Redis."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused Redis go on (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it (a paused one too)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


DEPLOY_NGINX = ROOT / "deploy" / "nginx" / "seafront.conf"


def nginx_config(workdir: Path, port: int, upstreams: list[str], site: Path = DEPLOY_NGINX) -> Path:
    """A main nginx.conf in `workdir` around deploy/'s site config, for a non-root-friendly run:
    the site's upstream servers replaced by `upstreams` and its port by `port`, every path
    (pid, logs, temporary files) in `workdir`, and each answer naming the replica that made it
    (`X-Upstream`)."""
    text = site.read_text()
    servers = re.compile(r"^(\s*)server app\d:5000[^;]*;\n", re.MULTILINE)
    indent = servers.search(text)
    assert indent, f"no `server appN:5000` lines in {site}"
    lines = "".join(
        f"{indent.group(1)}server {address} max_fails=1 fail_timeout=5s;\n" for address in upstreams
    )
    text = servers.sub("", text, count=0)
    text = text.replace("upstream seafront {\n", "upstream seafront {\n" + lines, 1)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (workdir / "seafront.conf").write_text(text)
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, nginx's workers would be nobody
    main = workdir / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log info;\nevents {{ worker_connections 512; }}\n"
        "http {\n"
        f"  access_log {workdir}/access.log;\n"
        + "".join(
            f"  {kind}_temp_path {workdir}/{kind}_temp;\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + "  add_header X-Upstream $upstream_addr always;\n"
        f"  include {workdir}/seafront.conf;\n"
        "}\n"
    )
    return main


class NginxServer:
    """Debian's nginx in front of `upstreams` with deploy/nginx/seafront.conf, from `workdir`."""

    def __init__(self, workdir: Path, upstreams: list[str], port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.config = nginx_config(workdir, self.port, upstreams)
        self.process: subprocess.Popen | None = None

    def command(self, *args: str) -> list[str]:
        """nginx's command line for this configuration."""
        return [
            "nginx",
            "-p",
            str(self.workdir),
            "-c",
            str(self.config),
            "-e",
            str(self.workdir / "error.log"),
            *args,
        ]

    def start(self) -> NginxServer:
        """Start it (in the foreground: `daemon off`) and wait until it answers."""
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

        def answers() -> bool:
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"nginx exited:\n{self.log()}")
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return True
            except requests.ConnectionError:
                return False

        wait_until(answers, 20, message=lambda: f"nginx did not start:\n{self.log()}")
        return self

    def log(self) -> str:
        """nginx's error log so far."""
        path = self.workdir / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        """Stop it (SIGTERM: nginx's fast shutdown; the graceful one waits for idle clients)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
