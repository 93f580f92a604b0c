"""The local review page (`train.py review`): decisions, cleaned.csv, path checks, CSRF."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image
from sklearn.datasets import load_sample_images
from werkzeug.serving import make_server

from classifier.errors import StartupError
from formats import atomic
from formats.labels import write_labels_csv
from training import review
from training.review.views import EXTENSION
from webapp import server

from .support import ROOT, free_port, status_with_host, wait_until

TOP_LOSSES = """\
file,split,actual,predicted,probability,loss
mod/mod_0.jpg,valid,mod,rocker,0.97,3.51
rocker/rocker_0.jpg,train,rocker,mod,0.91,2.41
mod/mod_1.jpg,train,mod,rocker,0.80,1.61
rocker/rocker_1.jpg,valid,rocker,mod,0.66,1.08
mod/mod_2.jpg,valid,mod,mod,0.55,0.60
rocker/rocker_2.jpg,train,rocker,rocker,0.52,0.65
"""
# two images per class are not in the top losses: cleaned.csv must keep them all the same
STARTING_LABELS = {
    f"{label}/{label}_{i}.jpg": label for label in ("mod", "rocker") for i in range(4)
}
TOP_FILES = [line.split(",")[0] for line in TOP_LOSSES.splitlines()[1:]]


@pytest.fixture(scope="session")
def photo_tiles():
    """Eight 128x128 crops of scikit-learn's two sample photos: real pixels, no download."""
    china, flower = load_sample_images().images
    return {
        label: [
            Image.fromarray(photo[y : y + 192, x : x + 192]).resize((128, 128))
            for x, y in ((40, 60), (240, 60), (40, 220), (300, 200))
        ]
        for label, photo in (("mod", china), ("rocker", flower))
    }


@pytest.fixture()
def data_dir(tmp_path, photo_tiles):
    """A data folder of class folders, DIR/<label>/<label>_<i>.jpg, beside a secret file."""
    folder = tmp_path / "data"
    for label, tiles in photo_tiles.items():
        (folder / label).mkdir(parents=True)
        for i, tile in enumerate(tiles):
            tile.save(folder / label / f"{label}_{i}.jpg", quality=85)
    (tmp_path / "secret.txt").write_text("not for the review page")
    return folder


@pytest.fixture()
def reports_dir(tmp_path):
    """A reports folder with a hand-written top_losses.csv, as `train.py fit` writes it."""
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "top_losses.csv").write_text(TOP_LOSSES)
    return folder


@pytest.fixture()
def make_review_client(data_dir, reports_dir):
    """A function returning a test review_client of a freshly started review app (a restart)."""

    def make(port: int | None = None, **config):
        return review.create_review_app(
            data_dir, reports_dir, {"TESTING": True, **config}, port=port
        ).test_client()

    return make


@pytest.fixture()
def review_client(make_review_client):
    """A test review_client of the review app for `data_dir`."""
    return make_review_client()


def page_csrf_token(review_client) -> str:
    """The CSRF token the page gives its forms."""
    return re.search(r'name="csrf_token" value="([^"]+)"', review_client.get("/").text).group(1)


def decide(review_client, fname: str, action: str, label: str | None = None, query: str = ""):
    """Press a card's `action` button for `fname`, as the page's form does."""
    form = {"csrf_token": page_csrf_token(review_client), "file": fname, "action": action}
    return review_client.post(
        f"/decide{query}", data={**form, **({"label": label} if label else {})}
    )


def read_cleaned(data_dir: Path) -> dict[str, str]:
    """DIR/cleaned.csv as {fname: label}, checking its header."""
    with (data_dir / "cleaned.csv").open(newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == ["fname", "label"]
        return {row["fname"]: row["label"] for row in reader}


def shown_files(page: str) -> list[str]:
    """The files of the cards on `page`, in page order."""
    return re.findall(r'data-file="([^"]+)"', page)


def card(page: str, fname: str) -> str:
    """The HTML of `fname`'s card on `page`."""
    start = page.index(f'data-file="{fname}"')
    end = page.find("data-file=", start + 1)
    return page[start : end if end > 0 else len(page)]


# --- the factory and start-up ---------------------------------------------------------------


def test_factory_takes_testing_config(data_dir, reports_dir):
    assert not review.create_review_app(data_dir, reports_dir).testing
    assert review.create_review_app(data_dir, reports_dir, {"TESTING": True}).testing


def test_factory_reads_seafront_environment(data_dir, reports_dir, monkeypatch):
    monkeypatch.setenv("SEAFRONT_REVIEW_PAGE_SIZE", "2")
    assert review.create_review_app(data_dir, reports_dir).config["REVIEW_PAGE_SIZE"] == 2


def test_serve_listens_on_loopback_only(data_dir, reports_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(server, "serve", lambda *arguments: calls.append(arguments))
    review.serve(data_dir, reports_dir, 5123)
    [(load_app, options)] = calls
    assert options == {
        "bind": "127.0.0.1:5123",
        "workers": 1,
        "threads": 4,
        "graceful_timeout": 5,
    }
    assert load_app().extensions[EXTENSION].state.data_dir == data_dir
    assert load_app().config["LOCAL_ONLY_PORT"] == 5123


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda data, reports: (reports / "top_losses.csv").unlink(), "train.py fit"),
        (
            lambda data, reports: (reports / "top_losses.csv").write_text("file,loss\n"),
            "train.py fit",
        ),
        (lambda data, reports: shutil.rmtree(data), "is not a folder"),
        (lambda data, reports: [shutil.rmtree(data), data.mkdir()], "holds no images"),
        (lambda data, reports: (data / "review_decisions.json").write_text("{"), "delete it"),
        (
            lambda data, reports: (data / "review_decisions.json").write_text(
                json.dumps(
                    {
                        "format": 1,
                        "start_labels": {"a.jpg": "mod"},
                        "decisions": {"a.jpg": {"action": "x"}},
                    }
                )
            ),
            "delete it",
        ),
        (lambda data, reports: (data / "cleaned.csv").write_text("name,class\n"), "fname,label"),
        (
            lambda data, reports: (reports / "top_losses.csv").write_text(
                TOP_LOSSES.replace("mod/", "other/mod/").replace("rocker/", "other/rocker/")
            ),
            "none of the files",
        ),
    ],
    ids=[
        "no top_losses",
        "old top_losses",
        "no DIR",
        "empty DIR",
        "bad decisions",
        "unknown action",
        "bad csv",
        "other DIR's top_losses",
    ],
)
def test_startup_problem_is_one_sentence_saying_what_to_do(
    data_dir, reports_dir, break_it, message
):
    break_it(data_dir, reports_dir)
    with pytest.raises(StartupError, match=re.escape(message)):
        review.create_review_app(data_dir, reports_dir)


# --- the page ---------------------------------------------------------------------------------


def test_page_shows_each_top_loss_with_its_numbers(review_client):
    page = review_client.get("/").text
    assert shown_files(page) == TOP_FILES
    mod_0 = card(page, "mod/mod_0.jpg")
    for text in (
        "valid",
        '<dd class="col-7 mb-0">mod</dd>',
        "rocker",
        "0.970",
        "3.510",
        'src="/image?file=mod/mod_0.jpg"',
    ):
        assert text in mod_0


def test_page_loads_bootstrap_locally_without_inline_script_or_style(review_client):
    page = review_client.get("/").text
    assert '<link rel="stylesheet" href="/bootstrap/static/css/bootstrap.min.css' in page
    assert "cdn" not in page.lower()
    assert "<script" not in page
    assert "style=" not in page
    assert review_client.get("/static/review.css").status_code == 200


@pytest.mark.parametrize(
    ("query", "files"),
    [
        ("", TOP_FILES),
        ("?label=mod", ["mod/mod_0.jpg", "mod/mod_1.jpg", "mod/mod_2.jpg"]),
        ("?split=valid", ["mod/mod_0.jpg", "rocker/rocker_1.jpg", "mod/mod_2.jpg"]),
        ("?label=rocker&split=train", ["rocker/rocker_0.jpg", "rocker/rocker_2.jpg"]),
    ],
)
def test_filter_by_class_and_split(review_client, query, files):
    assert shown_files(review_client.get(f"/{query}").text) == files


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?label=teddy", "Unknown class &#39;teddy&#39;: choose one of mod, rocker."),
        ("?split=test", "Unknown split &#39;test&#39;: choose train or valid."),
    ],
)
def test_unknown_filter_gets_400_saying_what_to_choose(review_client, query, message):
    response = review_client.get(f"/{query}")
    assert response.status_code == 400
    assert message in response.text


@pytest.mark.parametrize(("page", "files"), [(1, TOP_FILES[:4]), (2, TOP_FILES[4:]), (3, [])])
def test_pages_split_long_lists(make_review_client, page, files):
    review_client = make_review_client(REVIEW_PAGE_SIZE=4)
    assert shown_files(review_client.get(f"/?page={page}").text) == files


# --- decisions and cleaned.csv -----------------------------------------------------------------

DECISIONS = [
    # action, label sent, mod/mod_0.jpg's label in cleaned.csv (None: left out), badge on reload
    ("keep", None, "mod", "Kept: mod"),
    ("relabel", "rocker", "rocker", "Relabelled: rocker"),
    ("relabel", "mod", "mod", "Kept: mod"),
    ("delete", None, None, "Marked for deletion"),
]


@pytest.mark.parametrize(("action", "label", "saved", "badge"), DECISIONS)
def test_decision_rewrites_cleaned_csv_with_every_image(
    review_client, data_dir, action, label, saved, badge
):
    assert decide(review_client, "mod/mod_0.jpg", action, label).status_code == 302
    expected = {**STARTING_LABELS, "mod/mod_0.jpg": saved}
    assert read_cleaned(data_dir) == {f: lab for f, lab in expected.items() if lab is not None}


@pytest.mark.parametrize(("action", "label", "saved", "badge"), DECISIONS)
def test_reload_shows_decision_with_undo(review_client, action, label, saved, badge):
    decide(review_client, "mod/mod_0.jpg", action, label)
    mod_0 = card(review_client.get("/").text, "mod/mod_0.jpg")
    assert re.search(rf'class="badge [^"]*decision">\s*{badge}\s*</span>', mod_0)
    assert 'value="undo"' in mod_0
    assert 'value="undo"' not in card(review_client.get("/").text, "mod/mod_1.jpg")


@pytest.mark.parametrize(("action", "label", "saved", "badge"), DECISIONS)
def test_undo_restores_starting_label(review_client, data_dir, action, label, saved, badge):
    decide(review_client, "mod/mod_1.jpg", "relabel", "rocker")
    decide(review_client, "mod/mod_0.jpg", action, label)
    decide(review_client, "mod/mod_0.jpg", "undo")
    assert read_cleaned(data_dir) == {**STARTING_LABELS, "mod/mod_1.jpg": "rocker"}
    assert "decision" not in card(review_client.get("/").text, "mod/mod_0.jpg")


def test_later_decision_replaces_earlier_one(review_client, data_dir):
    decide(review_client, "mod/mod_0.jpg", "delete")
    decide(review_client, "mod/mod_0.jpg", "relabel", "rocker")
    assert read_cleaned(data_dir) == {**STARTING_LABELS, "mod/mod_0.jpg": "rocker"}


def test_decisions_and_undo_survive_a_restart(make_review_client, data_dir):
    decide(make_review_client(), "mod/mod_0.jpg", "relabel", "rocker")
    restarted = make_review_client()
    assert "Relabelled: rocker" in card(restarted.get("/").text, "mod/mod_0.jpg")
    # cleaned.csv now says rocker: the undo must still know the image started as mod
    decide(restarted, "mod/mod_0.jpg", "undo")
    assert read_cleaned(data_dir) == STARTING_LABELS


def test_existing_cleaned_csv_gives_the_starting_labels(make_review_client, data_dir):
    earlier = {**STARTING_LABELS, "mod/mod_3.jpg": "rocker"}
    del earlier["rocker/rocker_3.jpg"]
    write_labels_csv(data_dir / "cleaned.csv", earlier)
    review_client = make_review_client()
    decide(review_client, "mod/mod_0.jpg", "keep")
    assert read_cleaned(data_dir) == earlier


def test_decision_goes_back_to_the_same_filter_and_card(review_client):
    response = decide(review_client, "mod/mod_1.jpg", "keep", query="?label=mod&split=train")
    assert response.headers["Location"] == "/?label=mod&split=train#card-2"


def test_failed_write_leaves_files_and_page_unchanged(review_client, data_dir, monkeypatch):
    decide(review_client, "mod/mod_0.jpg", "delete")
    before = read_cleaned(data_dir)

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        decide(review_client, "mod/mod_1.jpg", "delete")
    monkeypatch.undo()
    assert read_cleaned(data_dir) == before
    assert "decision" not in card(review_client.get("/").text, "mod/mod_1.jpg")
    assert not [p for p in data_dir.iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize(
    "form",
    [
        {"file": "mod/mod_0.jpg", "action": "relabel", "label": "teddy"},
        {"file": "mod/mod_0.jpg", "action": "relabel"},
        {"file": "mod/mod_0.jpg", "action": "explode"},
        {"file": "mod/mod_0.jpg"},
        {"action": "keep"},
    ],
    ids=["unknown class", "no class", "unknown action", "no action", "no file"],
)
def test_malformed_decision_gets_400_and_changes_nothing(review_client, data_dir, form):
    response = review_client.post(
        "/decide", data={"csrf_token": page_csrf_token(review_client), **form}
    )
    assert response.status_code == 400
    assert not (data_dir / "cleaned.csv").exists()


# --- paths and CSRF ------------------------------------------------------------------------------


def test_image_route_serves_the_image_file(review_client, data_dir):
    response = review_client.get("/image", query_string={"file": "rocker/rocker_3.jpg"})
    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert response.data == (data_dir / "rocker/rocker_3.jpg").read_bytes()


BAD_PATHS = [
    "../secret.txt",
    "mod/../../secret.txt",
    "../data/../secret.txt",
    "..",
    "mod/../..",
    "/etc/passwd",
    "",
    ".",
    "mod/\x00.jpg",
    "cleaned.csv",
    "review_decisions.json",
    "mod",
    "mod/missing.jpg",
]


@pytest.mark.parametrize("fname", BAD_PATHS)
def test_image_route_refuses_paths_that_are_not_images_of_dir(review_client, fname):
    response = review_client.get("/image", query_string={"file": fname})
    assert response.status_code == 400
    assert "not for the review page" not in response.text


@pytest.mark.parametrize("fname", BAD_PATHS)
def test_decision_refuses_paths_that_are_not_images_of_dir(review_client, data_dir, fname):
    assert decide(review_client, fname, "delete").status_code == 400
    assert not (data_dir / "cleaned.csv").exists()


def test_image_behind_a_symlink_out_of_dir_gets_400(make_review_client, data_dir):
    (data_dir / "mod" / "escape.jpg").symlink_to(data_dir.parent / "secret.txt")
    review_client = make_review_client()
    assert review_client.get("/image", query_string={"file": "mod/escape.jpg"}).status_code == 400


@pytest.mark.parametrize("token", [None, "forged-token"], ids=["missing", "forged"])
@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/decide", {"file": "mod/mod_0.jpg", "action": "delete"}),
        ("/deletions", {"files": "rocker/rocker_0.jpg", "confirm": "y"}),
    ],
)
def test_form_without_a_valid_csrf_token_gets_400(review_client, data_dir, path, form, token):
    decide(review_client, "rocker/rocker_0.jpg", "delete")
    before = read_cleaned(data_dir)
    response = review_client.post(path, data={**form, **({"csrf_token": token} if token else {})})
    assert response.status_code == 400
    assert "Reload the page and try again." in response.text
    assert read_cleaned(data_dir) == before
    assert (data_dir / "rocker/rocker_0.jpg").exists()


# --- apply deletions ---------------------------------------------------------------------------


def test_deletion_page_lists_marked_files_all_ticked(review_client):
    decide(review_client, "mod/mod_0.jpg", "delete")
    decide(review_client, "rocker/rocker_0.jpg", "delete")
    decide(review_client, "mod/mod_1.jpg", "relabel", "rocker")
    assert 'href="/deletions">Apply deletions (2)' in review_client.get("/").text
    page = review_client.get("/deletions").text
    ticked = re.findall(r'name="files" value="([^"]+)"\s+id="[^"]+" checked', page)
    assert ticked == ["mod/mod_0.jpg", "rocker/rocker_0.jpg"]
    assert re.search(r'name="confirm" value="y" id="confirm" required', page)


def apply_deletions(review_client, files: list[str], confirm: bool = True):
    """Submit the confirmation form for `files`."""
    form = {"csrf_token": page_csrf_token(review_client), "files": files}
    return review_client.post("/deletions", data={**form, **({"confirm": "y"} if confirm else {})})


def test_apply_deletions_without_confirmation_deletes_nothing(review_client, data_dir):
    decide(review_client, "mod/mod_0.jpg", "delete")
    response = apply_deletions(review_client, ["mod/mod_0.jpg"], confirm=False)
    assert response.status_code == 400
    assert "Tick the box to confirm the deletion." in response.text
    assert (data_dir / "mod/mod_0.jpg").exists()


def test_apply_deletions_deletes_only_the_chosen_files(review_client, data_dir):
    decide(review_client, "mod/mod_0.jpg", "delete")
    decide(review_client, "rocker/rocker_0.jpg", "delete")
    decide(review_client, "mod/mod_1.jpg", "relabel", "rocker")
    response = apply_deletions(review_client, ["mod/mod_0.jpg"])
    assert response.status_code == 302
    remaining = {p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.jpg")}
    assert remaining == set(STARTING_LABELS) - {"mod/mod_0.jpg"}
    expected = {**STARTING_LABELS, "mod/mod_1.jpg": "rocker"}
    del expected["mod/mod_0.jpg"], expected["rocker/rocker_0.jpg"]
    assert read_cleaned(data_dir) == expected
    page = review_client.get("/").text
    assert "Deleted 1 file(s)" in page
    assert "mod/mod_0.jpg" not in shown_files(page)
    assert "Marked for deletion" in card(page, "rocker/rocker_0.jpg")


@pytest.mark.parametrize("fname", ["mod/mod_1.jpg", "../secret.txt"], ids=["unmarked", "outside"])
def test_apply_deletions_refuses_files_not_marked(review_client, data_dir, fname):
    decide(review_client, "mod/mod_0.jpg", "delete")
    assert apply_deletions(review_client, [fname]).status_code == 400
    assert (data_dir / fname).exists()
    assert (data_dir / "mod/mod_0.jpg").exists()


def test_apply_deletions_never_leaves_dir_even_when_decisions_file_says_so(
    make_review_client, data_dir
):
    saved = {
        "format": 1,
        "start_labels": STARTING_LABELS,
        "decisions": {"mod/mod_0.jpg": {"action": "delete"}, "../secret.txt": {"action": "delete"}},
    }
    (data_dir / "review_decisions.json").write_text(json.dumps(saved))
    review_client = make_review_client()
    assert apply_deletions(review_client, ["mod/mod_0.jpg", "../secret.txt"]).status_code == 400
    assert (data_dir.parent / "secret.txt").exists()
    assert (data_dir / "mod/mod_0.jpg").exists()


def test_train_py_review_prints_its_address_and_answers_to_it_only(data_dir, reports_dir, tmp_path):
    port = free_port()
    command = [sys.executable, str(ROOT / "train.py"), "review", "--data", str(data_dir)]
    command += ["--reports", str(reports_dir), "--port", str(port)]
    log = tmp_path / "review.log"
    url = f"http://127.0.0.1:{port}/"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
        try:
            # served, not only printed: a worker stopped while it boots may outlast the wait
            wait_until(
                lambda: process.poll() is not None or status_with_host(url, f"127.0.0.1:{port}"),
                timeout=60,
                message=lambda: f"not served:\n{log.read_text()}",
            )
            assert status_with_host(url, f"localhost:{port}") == 200
            assert status_with_host(url, f"evil.example:{port}") == 400
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert f"review page for {data_dir}: {url}" in log.read_text()


# --- end to end in a real browser -----------------------------------------------------------------


@pytest.fixture()
def live_url(data_dir, reports_dir, monkeypatch):
    """The review app served on 127.0.0.1 by werkzeug in a background thread (tests only)."""
    # relative folders, as a user types them (and as the screenshot shows them)
    monkeypatch.chdir(data_dir.parent)
    # TESTING lets Werkzeug's server serve it here; `train.py review` serves it with gunicorn
    app = review.create_review_app(Path(data_dir.name), Path(reports_dir.name), {"TESTING": True})
    live = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=live.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{live.server_port}/"
    live.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def browser_page(browser):
    """A fresh page of the headless browser."""
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    yield page
    page.close()


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_review_in_a_browser_relabel_delete_reload_undo(live_url, browser_page, data_dir, tmp_path):
    page = browser_page
    page.goto(live_url)

    def press(fname: str, button: str) -> None:
        with page.expect_navigation():
            page.locator(f'[data-file="{fname}"]').get_by_role("button", name=button).click()

    mod_0 = page.locator('[data-file="mod/mod_0.jpg"]')
    mod_0.get_by_label("New class for mod/mod_0.jpg").select_option("rocker")
    press("mod/mod_0.jpg", "Relabel")
    assert read_cleaned(data_dir) == {**STARTING_LABELS, "mod/mod_0.jpg": "rocker"}

    press("rocker/rocker_0.jpg", "Delete")
    relabelled_and_deleted = {**STARTING_LABELS, "mod/mod_0.jpg": "rocker"}
    del relabelled_and_deleted["rocker/rocker_0.jpg"]
    assert read_cleaned(data_dir) == relabelled_and_deleted

    page.reload()
    assert mod_0.locator(".decision").inner_text() == "Relabelled: rocker"
    assert (
        page.locator('[data-file="rocker/rocker_0.jpg"] .decision').inner_text()
        == "Marked for deletion"
    )
    assert read_cleaned(data_dir) == relabelled_and_deleted
    page.screenshot(path=tmp_path / "review.png")

    press("mod/mod_0.jpg", "Undo")
    assert mod_0.locator(".decision").count() == 0
    expected = {**STARTING_LABELS}
    del expected["rocker/rocker_0.jpg"]
    assert read_cleaned(data_dir) == expected

    # the confirmation is a page with a required tick box, no JavaScript dialog
    with page.expect_navigation():
        page.get_by_role("link", name="Apply deletions (1)…").click()
    page.get_by_label("Yes, delete the ticked files from disk").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Delete files").click()
    assert "Deleted 1 file(s)" in page.locator(".alert").inner_text()
    assert not (data_dir / "rocker/rocker_0.jpg").exists()
    assert read_cleaned(data_dir) == expected

    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":  # kept small: 128 colours are plenty
        docs_png = Path(__file__).parents[1] / "docs" / "review.png"
        Image.open(tmp_path / "review.png").convert("RGB").quantize(128).save(
            docs_png, optimize=True
        )


def test_the_review_page_has_its_own_session_cookie(review_client):
    page = review_client.get("/")
    assert "seafront_review=" in page.headers.get("Set-Cookie", "")


# --- only the local user: Host, Origin, headers (DNS rebinding, framing) --------------------------


@pytest.mark.parametrize(
    ("port", "host", "status"),
    [
        (None, "localhost", 200),
        (None, "127.0.0.1:5123", 200),
        (None, "[::1]:5123", 200),
        (None, "evil.example", 400),
        (None, "127.0.0.1.evil.example", 400),
        (None, "localhost:notaport", 400),
        (5123, "127.0.0.1:5123", 200),
        (5123, "LOCALHOST:5123", 200),
        (5123, "localhost", 400),
        (5123, "127.0.0.1:5124", 400),
        (5123, "evil.example:5123", 400),
    ],
)
@pytest.mark.parametrize("path", ["/", "/image?file=mod/mod_0.jpg", "/deletions"])
def test_only_its_own_loopback_address_is_served(make_review_client, port, host, path, status):
    response = make_review_client(port=port).get(path, headers={"Host": host})
    assert response.status_code == status
    if status == 400:
        assert "answers only to its own address" in response.text
        assert "csrf_token" not in response.text


def test_a_rebinding_page_can_neither_decide_nor_delete(make_review_client, data_dir):
    review_client = make_review_client(port=5123)
    local = {"Host": "127.0.0.1:5123"}
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', review_client.get("/", headers=local).text
    ).group(1)
    rebound = {"Host": "evil.example:5123", "Origin": "http://evil.example:5123"}
    form = {"csrf_token": token, "file": "mod/mod_0.jpg", "action": "delete"}
    assert review_client.post("/decide", data=form, headers=rebound).status_code == 400
    assert not (data_dir / "cleaned.csv").exists()
    assert (data_dir / "mod/mod_0.jpg").exists()


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [
        ("Origin", "http://evil.example", 403),
        ("Origin", "null", 403),
        ("Origin", "http://localhost.evil.example", 403),
        ("Origin", "file://", 403),
        ("Referer", "http://evil.example/page.html", 403),
        ("Origin", "http://localhost", 302),
        ("Referer", "http://127.0.0.1/?label=mod", 302),
        (None, None, 302),
    ],
)
@pytest.mark.parametrize("step", ["decide", "apply"])
def test_a_form_post_from_another_site_is_refused_even_with_a_valid_token(
    review_client, data_dir, header, value, status, step
):
    if step == "apply":
        decide(review_client, "mod/mod_0.jpg", "delete")
        form = {
            "files": ["mod/mod_0.jpg"],
            "confirm": "y",
            "csrf_token": page_csrf_token(review_client),
        }
        path = "/deletions"
    else:
        form = {
            "file": "mod/mod_0.jpg",
            "action": "delete",
            "csrf_token": page_csrf_token(review_client),
        }
        path = "/decide"
    before = (data_dir / "cleaned.csv").read_text() if step == "apply" else None
    response = review_client.post(path, data=form, headers={header: value} if header else {})
    assert response.status_code == status
    if status == 403:
        assert "cannot change anything here" in response.text
        assert (data_dir / "mod/mod_0.jpg").exists()
        if step == "apply":
            assert (data_dir / "cleaned.csv").read_text() == before
        else:
            assert not (data_dir / "cleaned.csv").exists()
    else:
        assert (data_dir / "mod/mod_0.jpg").exists() == (step == "decide")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 200), ("/image?file=mod/mod_0.jpg", 200), ("/deletions", 200), ("/nowhere", 404)],
)
def test_every_response_forbids_framing_and_sniffing(review_client, path, status):
    response = review_client.get(path)
    assert response.status_code == status
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- symlinks and files gone from disk ----------------------------------------------------------


def test_deleting_a_symlink_deletes_the_link_never_its_target(make_review_client, data_dir):
    link = data_dir / "mod" / "link.jpg"
    link.symlink_to(data_dir / "rocker/rocker_3.jpg")
    review_client = make_review_client()
    decide(review_client, "mod/link.jpg", "delete")
    assert apply_deletions(review_client, ["mod/link.jpg"]).status_code == 302
    assert not link.is_symlink()
    assert (data_dir / "rocker/rocker_3.jpg").is_file()


def test_a_link_out_of_dir_cannot_be_marked_and_deleting_it_spares_its_target(
    make_review_client, data_dir
):
    victim = data_dir.parent / "kept.jpg"
    shutil.copy(data_dir / "mod/mod_3.jpg", victim)
    (data_dir / "mod" / "link.jpg").symlink_to(victim)
    assert decide(make_review_client(), "mod/link.jpg", "delete").status_code == 400
    # marked all the same by an edited decisions file: only the link goes
    saved = {
        "format": 1,
        "start_labels": {**STARTING_LABELS, "mod/link.jpg": "mod"},
        "decisions": {"mod/link.jpg": {"action": "delete"}},
    }
    (data_dir / "review_decisions.json").write_text(json.dumps(saved))
    assert apply_deletions(make_review_client(), ["mod/link.jpg"]).status_code == 302
    assert not (data_dir / "mod" / "link.jpg").is_symlink()
    assert victim.is_file()


def test_an_image_gone_from_disk_gets_404_saying_so(review_client, data_dir):
    (data_dir / "mod/mod_0.jpg").unlink()
    response = review_client.get("/image", query_string={"file": "mod/mod_0.jpg"})
    assert response.status_code == 404
    assert "mod/mod_0.jpg is no longer in" in response.text
    assert "reload the page" in response.text


def test_deleting_a_file_already_gone_from_disk_is_no_error(review_client, data_dir):
    decide(review_client, "mod/mod_0.jpg", "delete")
    (data_dir / "mod/mod_0.jpg").unlink()
    assert apply_deletions(review_client, ["mod/mod_0.jpg"]).status_code == 302
    assert "mod/mod_0.jpg" not in read_cleaned(data_dir)


def test_a_file_that_cannot_be_deleted_gets_409_saying_why(review_client, data_dir):
    decide(review_client, "mod/mod_0.jpg", "delete")
    (data_dir / "mod/mod_0.jpg").unlink()
    (data_dir / "mod/mod_0.jpg").mkdir()  # a folder where the file was: unlink fails
    response = apply_deletions(review_client, ["mod/mod_0.jpg"])
    assert response.status_code == 409
    assert "Could not delete a file" in response.text
