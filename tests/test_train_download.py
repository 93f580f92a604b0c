"""`train.py download` against a local web server: real photos, a 404, a non-image, a dead port."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

import train
from training.download import url_filename


class ImageServer:
    """A static file server on 127.0.0.1 that counts the requests for each path."""

    def __init__(self, folder: Path):
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass  # keep the test output to what train.py prints

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
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
