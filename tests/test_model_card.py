"""/model: the model card from models/export.json, degrading without a card or reports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from .imagemaker import encode
from .support import wait_until

CARD = {
    "name": "brighton-seafront",
    "classes": ["mod", "rocker"],
    "architecture": "resnet34",
    "pretrained": True,
    "image_size": 224,
    "train_count": 160,
    "valid_count": 40,
    "error_rate": 0.025,
    "accuracy": 0.975,
    "per_class_accuracy": {"mod": 1.0, "rocker": 0.95},
    "epochs": {"frozen": 4, "unfrozen": 8},
    "learning_rates": {"frozen": 0.002, "unfrozen": [0.0001, 0.001]},
    "fastai_version": "2.8.12",
    "torch_version": "2.14.1",
    "created": "2025-05-17T09:30:00Z",
    "sha256": "0" * 64,
    "demo": False,
    "data": "data/brighton_seafront",
    "reports": {"confusion_matrix": "reports/confusion_matrix.png"},
}
MATRIX = encode(Image.new("RGB", (60, 60), "white"))


@pytest.fixture
def project(model_path, tmp_path) -> Path:
    """A project folder as train.py leaves it: models/export.pkl (the tiny model)."""
    (tmp_path / "models").mkdir()
    shutil.copy(model_path, tmp_path / "models" / "export.pkl")
    return tmp_path


def card_client(
    make_app, project: Path, card: dict | str | None = None, matrix: bool = True, **config
):
    """A client of an app serving `project`'s model, with that card and confusion matrix."""
    if card is not None:
        if isinstance(card, dict) and "sha256" in card:  # a card records its own model's sha256
            model = (project / "models" / "export.pkl").read_bytes()
            card = {**card, "sha256": hashlib.sha256(model).hexdigest()}
        text = card if isinstance(card, str) else json.dumps(card)
        (project / "models" / "export.json").write_text(text)
    if matrix:
        (project / "reports").mkdir(exist_ok=True)
        (project / "reports" / "confusion_matrix.png").write_bytes(MATRIX)
    return make_app(MODEL_PATH=str(project / "models" / "export.pkl"), **config).test_client()


def test_the_card_shows_classes_architecture_error_rate_date_and_matrix(make_app, project):
    client = card_client(make_app, project, CARD)
    html = client.get("/model").get_data(as_text=True)
    for words in (
        "mod",
        "rocker",
        "resnet34, pretrained on ImageNet",
        "2.5%",
        '<time datetime="2025-05-17T09:30:00+00:00">17 May 2025, 09:30 UTC</time>',
        "160 for training, 40 for validation",
        "frozen: 0.002; unfrozen: 0.0001 to 0.001",
        "fastai 2.8.12, torch 2.14.1",
        "95.0%",
    ):
        assert words in html
    assert 'confusion-matrix" src="/model/confusion-matrix.png"' in html
    matrix = client.get("/model/confusion-matrix.png")
    assert matrix.status_code == 200 and matrix.mimetype == "image/png"
    assert matrix.data == MATRIX


def test_without_a_card_the_classes_come_from_the_model(make_app, project):
    client = card_client(make_app, project, card=None)
    page = client.get("/model")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "mod</li>" in html and "rocker</li>" in html and 'id="no-card"' in html
    assert client.get("/model/confusion-matrix.png").status_code == 404


@pytest.mark.parametrize(
    "card",
    [
        "{not json",
        "[1, 2]",
        json.dumps(
            {"error_rate": "low", "created": "yesterday", "classes": "mod", "reports": ["x"]}
        ),
    ],
    ids=["not-json", "not-an-object", "wrong-types"],
)
def test_a_broken_card_never_breaks_the_page(make_app, project, card):
    page = card_client(make_app, project, card).get("/model")
    assert page.status_code == 200 and "rocker</li>" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "reports",
    [{}, {"confusion_matrix": "reports/missing.png"}],
    ids=["not-in-card", "file-missing"],
)
def test_without_reports_the_page_says_where_they_come_from(make_app, project, reports):
    client = card_client(make_app, project, {**CARD, "reports": reports}, matrix=False)
    html = client.get("/model").get_data(as_text=True)
    assert 'id="no-reports"' in html and 'confusion-matrix.png"' not in html
    assert client.get("/model/confusion-matrix.png").status_code == 404


@pytest.mark.parametrize("named", ["/etc/passwd", "../../../../etc/hostname", "models/export.pkl"])
def test_only_a_png_that_the_card_names_is_ever_served(make_app, project, named):
    client = card_client(
        make_app, project, {**CARD, "reports": {"confusion_matrix": named}}, matrix=False
    )
    assert client.get("/model/confusion-matrix.png").status_code == 404


def test_the_matrix_route_takes_no_path_from_the_user(make_app, project):
    client = card_client(make_app, project, CARD)
    assert client.get("/model/confusion-matrix.png?path=/etc/passwd").data == MATRIX
    assert client.get("/model/..%2fmodels%2fexport.pkl").status_code == 404


def test_a_card_for_other_classes_is_flagged_as_stale(make_app, project):
    html = (
        card_client(make_app, project, {**CARD, "classes": ["0", "1", "2"]})
        .get("/model")
        .get_data(as_text=True)
    )
    assert "may describe an older model" in html


def test_the_demo_card_says_it_is_the_digits_demo(make_app, project):
    html = (
        card_client(make_app, project, {**CARD, "demo": True}).get("/model").get_data(as_text=True)
    )
    assert "This is the digits demo" in html


def test_without_a_model_the_page_says_how_to_get_one(make_app, tmp_path):
    app = make_app(MODEL_PATH=str(tmp_path / "none" / "export.pkl"))
    page = app.test_client().get("/model")
    assert page.status_code == 200 and "No model is loaded" in page.get_data(as_text=True)


def test_a_card_left_from_the_model_before_is_stale_and_not_shown(make_app, project):
    # the README's "serve your own model" after the quick start: the demo's card stays behind,
    # older than the export.pkl copied over it
    (project / "models" / "export.json").write_text(json.dumps(CARD))  # sha256 of another file
    an_hour_ago = time.time() - 3600
    os.utime(project / "models" / "export.json", (an_hour_ago, an_hour_ago))
    client = card_client(make_app, project)
    page = client.get("/model")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="card-problem"' in html and "describes another file" in html
    assert "mod</li>" in html and "rocker</li>" in html  # the classes come from the model
    assert "resnet34" not in html and "2.5%" not in html  # nothing from the stale card
    assert client.get("/model/confusion-matrix.png").status_code == 404


def model_page_with(client, words: str) -> str | None:
    """/model's HTML when it contains `words`, else None."""
    html = client.get("/model").get_data(as_text=True)
    return html if words in html else None


def test_a_refused_replacement_is_named_on_the_page_while_the_old_model_serves(make_app, project):
    client = card_client(make_app, project, MODEL_RELOAD_INTERVAL=0.05)
    staging = project / "models" / ".fifo"
    os.mkfifo(staging)
    os.replace(staging, project / "models" / "export.pkl")
    html = wait_until(
        lambda: model_page_with(client, 'id="load-problem"'),
        message="the refusal never reached /model",
    )
    assert "keeps serving the model it loaded before" in html and "is a FIFO" in html
    assert "mod</li>" in html


def test_without_a_model_the_page_says_the_app_picks_one_up(make_app, tmp_path):
    app = make_app(MODEL_PATH=str(tmp_path / "none" / "export.pkl"))
    html = app.test_client().get("/model").get_data(as_text=True)
    assert "picks it up by itself" in html and "SEAFRONT_MODEL_RELOAD_INTERVAL" in html
    assert 'id="no-card"' not in html


HOW_IT_WAS_MADE = {
    "epochs": {"frozen": 4, "unfrozen": 0},
    "command": "python train.py fit --data data/brighton_seafront --labels cleaned.csv",
    "seed": 7,
    "labels": "data/brighton_seafront/cleaned.csv",
    "extra": ["uploads/feedback"],
    "augmentation": "light: rotation up to 10 degrees",
    "image_counts": {"train": {"mod": 80, "rocker": 70}, "extra": {"rocker": 10}},
    "files_sha256": "ab" * 32,
    "lr_find": {"valley": 0.0008, "minimum": 0.002},
    "learning_rate_choice": "the larger of lr-find's valley 0.0008, minimum 0.002",
    "training_seconds": 754.4,
    "versions": {"python": "3.11.7", "fastai": "2.8.12", "torchvision": "0.29.1"},
}


def test_the_card_says_how_the_model_was_made(make_app, project):
    client = card_client(make_app, project, {**CARD, **HOW_IT_WAS_MADE})
    html = client.get("/model").get_data(as_text=True)
    for words in (
        '<code id="command">python train.py fit --data data/brighton_seafront --labels '
        "cleaned.csv</code>",
        '<dd class="col-sm-8">7</dd>',
        "<code>data/brighton_seafront/cleaned.csv</code>",
        "<code>uploads/feedback</code>",
        "light: rotation up to 10 degrees",
        "(the larger of lr-find&#39;s valley 0.0008, minimum 0.002)",
        "12 min 34 s",
        "python 3.11.7, fastai 2.8.12, torchvision 0.29.1",
        "abababababababab</code>",
        '<th scope="col" class="text-end">Extra training images</th>',
        '<td class="text-end">80</td><td class="text-end">0</td>',  # mod: 80 own, 0 extra
    ):
        assert words in html, words
    assert "0 unfrozen" not in html  # a stage that did not run is not listed
