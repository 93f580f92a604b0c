"""`train.py download` against local web servers: real photos, a 404, a non-image, a dead port,
and hostile sites (endless bodies, tricklers, odd redirects, a PNG bomb) that it must bound."""

from __future__ import annotations

import argparse
import io
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

import train
from training.cli import DOWNLOAD_MAX_BYTES, byte_size
from training.download import SHOWN_PROBLEMS, ClassCounts, format_problems, url_filename
from webapp import settings

from .hostile import full_png_bomb


class ImageServer:
    """A static file server on 127.0.0.1 that counts the requests for each path; it serves
    a proxy's requests too."""

    def __init__(self, folder: Path):
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests[self.path] += 1
                # an absolute URL, as clients send to a proxy, is served as its path
                self.path = urlsplit(self.path)._replace(scheme="", netloc="").geturl()
                super().do_GET()

            def log_message(self, *args):
                pass  # keep the test output to what train.py prints

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def image_server(tmp_path, monkeypatch) -> Iterator[ImageServer]:
    """Serves china.jpg and flower.jpg (scikit-learn's two photos) and notes.jpg (text)."""
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)  # 127.0.0.1 must be reached directly
    folder = tmp_path / "site"
    folder.mkdir()
    for name, pixels in zip(("china.jpg", "flower.jpg"), load_sample_images().images, strict=True):
        photo = Image.fromarray(pixels)
        photo.thumbnail((96, 96))
        photo.save(folder / name, "JPEG")
    (folder / "notes.jpg").write_text("these are notes, not a picture")
    server = ImageServer(folder)
    yield server
    server.stop()


def dead_url() -> str:
    """A URL on a local port that nothing listens on."""
    with ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler) as probe:
        port = probe.server_port
    return f"http://127.0.0.1:{port}/gone.jpg"


def write_url_files(tmp_path: Path, server: ImageServer) -> list[str]:
    """mods: two photos, a 404, a non-image and a dead port; rockers: the two photos."""
    mods = tmp_path / "mods.csv"
    mods.write_text(
        "\n".join(
            [
                f"{server.url}/china.jpg",
                f"{server.url}/flower.jpg",
                f"{server.url}/missing.jpg",
                f"{server.url}/notes.jpg",
                dead_url(),
            ]
        )
        + "\n"
    )
    rockers = tmp_path / "rockers.txt"
    rockers.write_text(f"{server.url}/flower.jpg?size=large\n\n{server.url}/china.jpg\n")
    return [str(mods), str(rockers)]


def table(stdout: str) -> dict[str, tuple[int, ...]]:
    """The rows of the per-class table: downloaded, already there, failed, removed as broken."""
    rows = re.findall(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", stdout, re.MULTILINE)
    return {name: tuple(int(n) for n in counts) for name, *counts in rows}


def test_download_counts_every_outcome_per_class(image_server, tmp_path, capsys):
    dest = tmp_path / "data"
    status = train.main(["download", *write_url_files(tmp_path, image_server), "--dest", str(dest)])
    out = capsys.readouterr().out
    assert status == 0
    assert "downloaded  already there  failed  removed as broken" in out
    assert table(out) == {"mods": (3, 0, 2, 1), "rockers": (2, 0, 0, 0)}


def test_download_keeps_the_served_photos_and_drops_the_rest(image_server, tmp_path):
    dest = tmp_path / "data"
    train.main(["download", *write_url_files(tmp_path, image_server), "--dest", str(dest)])
    served = {(tmp_path / "site" / name).read_bytes() for name in ("china.jpg", "flower.jpg")}
    for folder in ("mods", "rockers"):
        files = list((dest / folder).iterdir())
        assert {path.read_bytes() for path in files} == served
        for path in files:
            with Image.open(path) as image:
                assert image.format == "JPEG" and max(image.size) == 96


def test_second_run_fetches_only_what_it_lacks(image_server, tmp_path, capsys):
    dest = tmp_path / "data"
    argv = ["download", *write_url_files(tmp_path, image_server), "--dest", str(dest)]
    train.main(argv)
    capsys.readouterr()
    image_server.requests.clear()
    assert train.main(argv) == 0
    # the failed and the broken are tried again; the two good photos are not
    assert table(capsys.readouterr().out) == {"mods": (1, 2, 2, 1), "rockers": (0, 2, 0, 0)}
    assert set(image_server.requests) == {"/missing.jpg", "/notes.jpg"}


def test_query_strings_are_kept_and_named_apart(image_server, tmp_path):
    dest = tmp_path / "data"
    train.main(["download", *write_url_files(tmp_path, image_server), "--dest", str(dest)])
    assert image_server.requests["/flower.jpg?size=large"] == 1
    assert (dest / "rockers" / url_filename(f"{image_server.url}/flower.jpg?size=large")).exists()


def test_max_pics_takes_the_first_urls_of_each_file(image_server, tmp_path, capsys):
    dest = tmp_path / "data"
    urls = write_url_files(tmp_path, image_server)
    assert train.main(["download", *urls, "--dest", str(dest), "--max-pics", "1"]) == 0
    assert table(capsys.readouterr().out) == {"mods": (1, 0, 0, 0), "rockers": (1, 0, 0, 0)}
    assert [p.name for p in (dest / "mods").iterdir()] == [
        url_filename(f"{image_server.url}/china.jpg")
    ]


def test_nothing_downloadable_exits_1_with_a_hint(image_server, tmp_path, capsys):
    url_file = tmp_path / "mods.csv"
    url_file.write_text(f"{image_server.url}/missing.jpg\n{dead_url()}\n")
    status = train.main(["download", str(url_file), "--dest", str(tmp_path / "data")])
    captured = capsys.readouterr()
    assert status == 1
    assert table(captured.out) == {"mods": (0, 0, 2, 0)}
    assert "internet connection" in captured.err


# --- bounds: bytes, time, redirects, pixels, class names (issue 11) ------------------------------

SLOW_BYTE = 0.2  # seconds between trickled bytes: well under --timeout 1, so only a deadline cuts


def trickle(wfile, data: bytes) -> None:
    """Send `data` one byte at a time, SLOW_BYTE apart, until done or the client hangs up."""
    try:
        for byte in data:
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(SLOW_BYTE)
    except OSError:
        pass  # the client gave up, as it should


class HostileServer:
    """Answers the way a careless or malicious site might; each path is one behaviour."""

    def __init__(self, photo: bytes):
        server = self
        self.requests: Counter[str] = Counter()
        bomb = full_png_bomb(13000)

        class Handler(BaseHTTPRequestHandler):
            def redirect(self, status: int, location: str) -> None:
                self.send_response(status)
                self.send_header("Location", location)
                self.end_headers()

            def body(self, data: bytes, length: int | None = None) -> None:
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.requests[self.path] += 1
                path = self.path
                if path == "/photo.jpg":
                    self.body(photo, len(photo))
                elif path == "/bomb.png":
                    self.body(bomb, len(bomb))
                elif path == "/truncated.jpg":
                    self.body(photo[: len(photo) // 2], len(photo) // 2)
                elif path == "/endless":
                    try:  # no Content-Length; 50 MB is far more than any test's cap
                        self.send_response(200)
                        self.end_headers()
                        for _ in range(800):
                            self.wfile.write(bytes(64 * 1024))
                    except OSError:
                        pass
                elif path == "/huge-length":
                    self.send_response(200)
                    self.send_header("Content-Length", str(30 * 1024 * 1024))
                    self.end_headers()
                    time.sleep(3)  # never sends the body: a client that reads would time out
                elif path == "/slow-headers":
                    self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                    trickle(self.wfile, b"a" * 30)
                elif path == "/slow-body":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(photo)))
                    self.end_headers()
                    trickle(self.wfile, photo[:30])
                elif path == "/to-ftp":
                    self.redirect(302, f"ftp://127.0.0.1:{server.port}/photo.jpg")
                elif path == "/to-file":
                    self.redirect(307, "file:///etc/passwd")
                elif path == "/to-data":
                    self.redirect(302, "data:image/png;base64,iVBORw0KGgo=")
                elif path == "/loop":
                    self.redirect(302, "/loop")
                elif path.startswith("/hop/"):
                    left = int(path.removeprefix("/hop/"))
                    self.redirect(301, f"/hop/{left - 1}" if left > 1 else "/photo.jpg")
                else:
                    self.send_error(404)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # the tricklers stop on their own once cut off
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def photo() -> bytes:
    """scikit-learn's china.jpg at 96 px: a real photo."""
    image = Image.fromarray(load_sample_images().images[0])
    image.thumbnail((96, 96))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def hostile(image_server, photo) -> Iterator[HostileServer]:
    """A HostileServer (image_server's fixture has already cleared the proxy variables)."""
    server = HostileServer(photo)
    yield server
    server.stop()


def download_one(tmp_path: Path, capsys, url: str, *flags: str) -> tuple[int, str, float]:
    """Run `train.py download --timeout 1` on a URL file `mods.csv` holding only `url`; return
    the exit status, stdout and the seconds it took."""
    url_file = tmp_path / "mods.csv"
    url_file.write_text(url + "\n")
    argv = ["download", str(url_file), "--dest", str(tmp_path / "data"), "--timeout", "1"]
    started = time.monotonic()
    status = train.main([*argv, *flags])
    return status, capsys.readouterr().out, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "flags", "why"),
    [
        pytest.param(
            "/endless",
            ["--max-bytes", "100KB"],
            "the body grew past the limit of 100 KB (--max-bytes)",
            id="body without Content-Length, over the cap",
        ),
        pytest.param(
            "/huge-length",
            [],
            "Content-Length 30 MB is over the limit of 20 MB (--max-bytes)",
            id="announced Content-Length over the default cap: refused before reading",
        ),
        pytest.param(
            "/slow-headers", [], "not done within 1 s (--timeout)", id="headers one byte at a time"
        ),
        pytest.param(
            "/slow-body", [], "not done within 1 s (--timeout)", id="body one byte at a time"
        ),
        pytest.param(
            "/to-ftp",
            [],
            "redirected to ftp://127.0.0.1:",
            id="302 to ftp",
        ),
        pytest.param(
            "/to-file",
            [],
            "redirected to file:///etc/passwd: only http and https redirects are followed",
            id="307 to file",
        ),
        pytest.param("/to-data", [], "redirected to data:image/png", id="302 to data"),
        pytest.param("/loop", [], "more than 5 redirects", id="redirect loop"),
        pytest.param("/hop/6", [], "more than 5 redirects", id="six redirects"),
        pytest.param("/missing.jpg", [], "HTTP 404 Not Found", id="404"),
    ],
)
def test_a_url_out_of_bounds_fails_fast_and_leaves_nothing(
    hostile, tmp_path, capsys, path, flags, why
):
    status, out, seconds = download_one(tmp_path, capsys, hostile.url + path, *flags)
    assert status == 1
    assert f"mods: failed {hostile.url}{path}: {why}" in out
    assert list((tmp_path / "data" / "mods").iterdir()) == []  # no partial file either
    assert seconds < 2.5  # --timeout 1 is the whole URL's budget, however the server trickles


def test_redirects_are_followed_up_to_five(hostile, tmp_path, capsys):
    status, out, _ = download_one(tmp_path, capsys, f"{hostile.url}/hop/5")
    assert status == 0 and table(out) == {"mods": (1, 0, 0, 0)}
    assert hostile.requests["/photo.jpg"] == 1


@pytest.mark.parametrize(("margin", "downloaded"), [(0, 1), (-1, 0)])
def test_the_byte_cap_is_inclusive(hostile, photo, tmp_path, capsys, margin, downloaded):
    _, out, _ = download_one(
        tmp_path, capsys, f"{hostile.url}/photo.jpg", "--max-bytes", str(len(photo) + margin)
    )
    assert table(out)["mods"][0] == downloaded


@pytest.mark.parametrize(
    ("path", "why"),
    [
        pytest.param(
            "/bomb.png",
            "13000x13000 pixels, over the app's limit of 50,000,000 (SEAFRONT_MAX_PIXELS)",
            id="169 MP PNG bomb",
        ),
        pytest.param(
            "/truncated.jpg", "does not decode (OSError: image file is truncated", id="truncated"
        ),
    ],
)
def test_verify_removes_what_the_app_would_refuse(hostile, tmp_path, capsys, path, why):
    status, out, _ = download_one(tmp_path, capsys, hostile.url + path)
    assert status == 1 and table(out) == {"mods": (1, 0, 0, 1)}
    assert f"mods: removed {hostile.url}{path}: {why}" in out
    assert list((tmp_path / "data" / "mods").iterdir()) == []


def test_verify_reads_the_pixel_limit_where_the_app_does(hostile, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEAFRONT_MAX_PIXELS", "1000")
    _, out, _ = download_one(tmp_path, capsys, f"{hostile.url}/photo.jpg")
    assert "96x64 pixels, over the app's limit of 1,000" in out


def test_the_default_cap_is_the_apps_upload_limit():
    assert settings.default("MAX_CONTENT_LENGTH") == DOWNLOAD_MAX_BYTES


@pytest.mark.parametrize(
    ("text", "size"),
    [("20MB", 20 * 1024 * 1024), ("500kb", 500 * 1024), ("1234", 1234), ("7 B", 7)],
)
def test_max_bytes_takes_plain_and_suffixed_sizes(text, size):
    assert byte_size(text) == size


@pytest.mark.parametrize("text", ["0", "lots", "2GB", "-5MB", "1.5MB"])
def test_max_bytes_refuses_what_is_not_a_size(text):
    with pytest.raises(argparse.ArgumentTypeError, match="e.g. 20MB"):
        byte_size(text)


def test_timeout_help_says_it_covers_the_whole_url(capsys):
    with pytest.raises(SystemExit):
        train.main(["download", "--help"])
    assert "from connecting to the last byte" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("file_name", "class_name", "why"),
    [
        ("...csv", "..", "starts with a dot"),
        (".csv", ".csv", "starts with a dot"),
        (".hidden.txt", ".hidden", "starts with a dot"),
        ("mods\\..\\up.csv", "mods\\..\\up", "backslash"),
    ],
)
def test_a_url_file_that_names_no_safe_class_is_refused(
    image_server, tmp_path, capsys, file_name, class_name, why
):
    url_file = tmp_path / "lists" / file_name
    url_file.parent.mkdir()
    url_file.write_text(f"{image_server.url}/china.jpg\n")
    dest = tmp_path / "lists" / "data"
    status = train.main(["download", str(url_file), "--dest", str(dest)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"would make a class named {class_name!r}" in err and why in err
    assert [p.name for p in url_file.parent.rglob("*")] == [file_name]  # no class folder anywhere
    assert image_server.requests == Counter()


def test_the_summary_names_each_failure_once_up_to_a_limit():
    counts = {
        "mods": ClassCounts(
            failures=[(f"http://x/{i}.jpg", "HTTP 404 Not Found") for i in range(25)]
        ),
        "rockers": ClassCounts(removed=[("http://y/a.jpg", "not an image Pillow can read")]),
    }
    lines = format_problems(counts).splitlines()
    assert lines[0] == "mods: failed http://x/0.jpg: HTTP 404 Not Found"
    assert len(lines) == SHOWN_PROBLEMS + 1 and lines[-1] == "... and 6 more"


def test_the_summary_says_why_each_url_failed(image_server, tmp_path, capsys):
    dest = tmp_path / "data"
    train.main(["download", *write_url_files(tmp_path, image_server), "--dest", str(dest)])
    out = capsys.readouterr().out
    assert f"mods: failed {image_server.url}/missing.jpg: HTTP 404 Not Found" in out
    assert re.search(
        r"^mods: failed http://127\.0\.0\.1:\d+/gone\.jpg: connection refused$", out, re.M
    )
    assert f"mods: removed {image_server.url}/notes.jpg: not an image Pillow can read" in out


def test_downloads_go_through_the_environments_proxy(image_server, tmp_path, capsys, monkeypatch):
    proxy = ImageServer(tmp_path / "site")  # a "proxy" that answers absolute URLs itself
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        status, out, _ = download_one(tmp_path, capsys, "http://photos.invalid/china.jpg")
    finally:
        proxy.stop()
    assert status == 0 and table(out) == {"mods": (1, 0, 0, 0)}
    assert proxy.requests == Counter({"http://photos.invalid/china.jpg": 1})
