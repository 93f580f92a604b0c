"""Uploads stay in memory unless keep-uploads is on; then only generated names under uploads/."""

from __future__ import annotations

import io
import re


def post(app, data: bytes, filename: str):
    """Post one image to the API."""
    return app.test_client().post("/api/predict", data={"file": (io.BytesIO(data), filename)})


def test_nothing_is_written_by_default(make_app, png_pictures, tmp_path):
    app = make_app()
    assert post(app, png_pictures["mod0"], "photo.png").status_code == 200
    assert not (tmp_path / "uploads").exists()


def test_kept_uploads_get_generated_names_never_the_clients(make_app, png_pictures, tmp_path):
    app = make_app(KEEP_UPLOADS=True)
    assert post(app, png_pictures["mod0"], "../../etc/passwd.png").status_code == 200
    kept = list((tmp_path / "uploads").iterdir())
    assert len(kept) == 1
    assert re.fullmatch(r"[0-9a-f]{32}\.png", kept[0].name)
    assert kept[0].read_bytes() == png_pictures["mod0"]


def test_rejected_uploads_are_not_kept(make_app, tmp_path):
    app = make_app(KEEP_UPLOADS=True)
    assert post(app, b"not an image", "x.jpg").status_code == 400
    assert not (tmp_path / "uploads").exists()
