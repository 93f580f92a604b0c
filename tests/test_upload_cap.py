"""Kept uploads are capped per folder (files and bytes); the oldest are rotated out."""

from __future__ import annotations

import io
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from webapp import create_app
from webapp.uploads import save_capped


@pytest.fixture
def folder(make_app, tmp_path):
    """A folder to keep files in, inside an app context (save_capped's caps: 5 files, 1000 B)."""
    with make_app(UPLOADS_MAX_FILES=5, UPLOADS_MAX_BYTES=1000).app_context():
        yield tmp_path / "kept"


def old_files(folder, count: int, size: int = 10) -> list:
    """`count` files in `folder`, each a minute older than the next."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"old{index}.png"
        path.write_bytes(bytes(size))
        stamp = 1_700_000_000 + 60 * index
        os.utime(path, (stamp, stamp))
        paths.append(path)
    return paths


def test_a_saved_file_gets_a_generated_name_and_the_given_extension(folder):
    path = save_capped(folder, b"data", ".PNG")
    assert re.fullmatch(r"[0-9a-f]{32}\.png", path.name)
    assert path.read_bytes() == b"data" and path.parent == folder


def test_the_oldest_files_are_rotated_out_above_the_file_cap(folder):
    old = old_files(folder, 6)
    new = save_capped(folder, b"new", "png")
    assert sorted(folder.iterdir()) == sorted([*old[-4:], new])


def test_the_oldest_files_are_rotated_out_above_the_byte_cap(folder):
    old = old_files(folder, 4, size=300)  # 1200 bytes: over the cap of 1000 already
    new = save_capped(folder, bytes(300), "png")
    assert sorted(folder.iterdir()) == sorted([*old[-2:], new])


def test_the_newest_file_stays_even_when_it_alone_is_over_the_byte_cap(folder):
    old_files(folder, 3)
    new = save_capped(folder, bytes(5000), "png")
    assert list(folder.iterdir()) == [new]


def test_explicit_caps_override_the_config(folder):
    old_files(folder, 3)
    save_capped(folder, b"new", "png", max_files=2, max_bytes=10**6)
    assert len(list(folder.iterdir())) == 2


def test_subfolders_are_neither_counted_nor_rotated(folder):
    feedback = old_files(folder / "feedback" / "mod", 8)
    for _ in range(8):
        save_capped(folder, b"new", "png")
    assert all(path.exists() for path in feedback)
    assert len([path for path in folder.iterdir() if path.is_file()]) == 5


def test_with_a_cap_root_every_file_under_it_counts(folder):
    old = old_files(folder / "feedback" / "mod", 3) + old_files(folder / "feedback" / "rocker", 3)
    os.utime(old[0], (1_600_000_000, 1_600_000_000))  # the oldest of all
    new = save_capped(
        folder / "feedback" / "rocker",
        b"new",
        "jpg",
        max_files=5,
        max_bytes=10**6,
        cap_root=folder / "feedback",
    )
    left = sorted(path for path in (folder / "feedback").rglob("*") if path.is_file())
    assert len(left) == 5 and new in left
    assert old[0] not in left and old[3] not in left  # mod's oldest, then rocker's


def test_many_threads_saving_at_once_stay_within_the_caps(folder):
    def save(_):
        return save_capped(folder, bytes(50), "png", max_files=5, max_bytes=1000)

    with ThreadPoolExecutor(16) as pool:
        saved = list(pool.map(save, range(200)))
    assert len(set(saved)) == 200
    left = list(folder.iterdir())
    assert len(left) == 5 and not [path for path in left if path.name.startswith(".")]


def test_the_caps_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEAFRONT_UPLOADS_MAX_FILES", "7")
    monkeypatch.setenv("SEAFRONT_UPLOADS_MAX_BYTES", "12345")
    app = create_app({"INSTANCE_PATH": str(tmp_path), "MODEL_PATH": str(tmp_path / "none.pkl")})
    assert (app.config["UPLOADS_MAX_FILES"], app.config["UPLOADS_MAX_BYTES"]) == (7, 12345)


def test_kept_uploads_through_the_api_are_capped(make_app, png_pictures, tmp_path):
    client = make_app(KEEP_UPLOADS=True, UPLOADS_MAX_FILES=3).test_client()
    for name in ["mod0", "mod1", "mod2", "rocker0", "rocker1"]:
        answer = client.post("/api/predict", data=png_pictures[name], content_type="image/png")
        assert answer.status_code == 200
    kept = sorted((tmp_path / "uploads").iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert [path.read_bytes() for path in kept] == [
        png_pictures[name] for name in ["mod2", "rocker0", "rocker1"]
    ]


def test_a_folder_that_cannot_be_written_costs_the_user_nothing(
    make_app, png_pictures, tmp_path, caplog
):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    client = make_app(KEEP_UPLOADS=True, UPLOAD_FOLDER=str(blocked)).test_client()
    with caplog.at_level(logging.ERROR):
        answer = client.post(
            "/api/predict", data={"file": (io.BytesIO(png_pictures["mod0"]), "a.png")}
        )
    assert answer.status_code == 200 and answer.get_json()["label"] == "mod"
    assert f"Could not keep an upload in {blocked}" in caplog.text
