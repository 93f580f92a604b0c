"""Each file format has one owner: the model card, the labels CSVs, and atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from formats import atomic
from formats.examples import (
    EXAMPLE_SIDE,
    EXAMPLES_PER_CLASS,
    examples_folder,
    list_examples,
    write_examples,
)
from formats.labels import (
    LabelsError,
    TopLoss,
    folder_label,
    labels_from_folders,
    read_labels_csv,
    read_top_losses,
    write_labels_csv,
    write_top_losses,
)
from formats.modelcard import CardError, ModelCard, card_path, read_card, write_card
from training.data import images_from_folders
from training.review.state import ReviewState

from .imagemaker import encode, make_picture


@pytest.fixture
def nested_data(tmp_path):
    """A data folder with images at several depths under the class folders, and strays."""
    root = tmp_path / "data"
    picture = encode(make_picture("mod", np.random.default_rng(0), (40, 40)))
    for fname in [
        "mod/a.png",
        "mod/2019/b.png",
        "mod/2019/summer/c.png",
        "rocker/d.png",
        "rocker/old/e.png",
        "stray.png",
        ".hidden/f.png",
        "mod/.cache/g.png",
    ]:
        (root / fname).parent.mkdir(parents=True, exist_ok=True)
        (root / fname).write_bytes(picture)
    return root


EXPECTED = {
    "mod/a.png": "mod",
    "mod/2019/b.png": "mod",
    "mod/2019/summer/c.png": "mod",
    "rocker/d.png": "rocker",
    "rocker/old/e.png": "rocker",
}


def test_an_image_is_labelled_by_its_top_level_folder(nested_data):
    assert labels_from_folders(nested_data) == EXPECTED


def test_training_and_the_review_page_label_a_nested_folder_the_same_way(nested_data):
    trained = {
        path.relative_to(nested_data).as_posix(): label
        for path, label in images_from_folders(nested_data)
    }
    reviewed = ReviewState.load(nested_data).start_labels
    assert trained == reviewed == EXPECTED


@pytest.mark.parametrize(
    ("fname", "label"),
    [
        ("mod/x.jpg", "mod"),
        ("mod/2019/x.jpg", "mod"),
        ("x.jpg", None),
        (".git/x.jpg", None),
    ],
)
def test_folder_label(fname, label):
    assert folder_label(fname) == label


def test_labels_csv_round_trips_sorted(tmp_path):
    path = write_labels_csv(tmp_path / "cleaned.csv", {"b/2.png": "b", "a/1.png": "a"})
    assert path.read_text() == "fname,label\na/1.png,a\nb/2.png,b\n"
    assert read_labels_csv(path) == {"a/1.png": "a", "b/2.png": "b"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("file,class\nx,y\n", "no fname,label header"),
        ("fname,label\na/1.png,\n", "line 2 lacks a fname or a label"),
    ],
)
def test_a_malformed_labels_csv_says_what_is_wrong(tmp_path, text, words):
    (tmp_path / "cleaned.csv").write_text(text)
    with pytest.raises(LabelsError, match=words):
        read_labels_csv(tmp_path / "cleaned.csv")


def test_top_losses_round_trip_highest_loss_first(tmp_path):
    rows = [
        TopLoss("a.png", "valid", "mod", "mod", 0.9, 0.1),
        TopLoss("b.png", "train", "mod", "rocker", 0.8, 1.6),
    ]
    path = write_top_losses(tmp_path / "top_losses.csv", rows)
    assert read_top_losses(path) == [rows[1], rows[0]]


def test_the_model_card_round_trips_and_sits_beside_the_model(tmp_path):
    model = tmp_path / "export.pkl"
    card = ModelCard(
        name="m",
        classes=["a", "b"],
        accuracy=0.5,
        sha256="ABC",
        per_class_accuracy={"a": 1.0, "b": 0.0},
    )
    assert write_card(model, card) == card_path(model) == tmp_path / "export.json"
    assert read_card(model) == ModelCard(**{**card.to_dict(), "sha256": "abc"})


def test_a_card_field_of_the_wrong_type_is_left_out(tmp_path):
    (tmp_path / "export.json").write_text(
        json.dumps(
            {"name": 3, "accuracy": True, "classes": ["a"], "image_size": "big", "demo": True}
        )
    )
    card = read_card(tmp_path / "export.pkl")
    assert (card.name, card.accuracy, card.classes, card.image_size, card.demo) == (
        None,
        None,
        ["a"],
        None,
        True,
    )


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_card_is_a_card_error(tmp_path, text):
    (tmp_path / "export.json").write_text(text)
    with pytest.raises(CardError):
        read_card(tmp_path / "export.pkl")


def test_no_card_is_none(tmp_path):
    assert read_card(tmp_path / "export.pkl") is None


def test_an_atomic_write_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        atomic.os, "replace", lambda a, b: events.append("replace") or real_replace(a, b)
    )
    atomic.write_atomically(tmp_path / "file.txt", "hello")
    assert (tmp_path / "file.txt").read_text() == "hello"
    assert events[:2] == ["fsync", "replace"]  # the file, then (after the rename) its folder


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    target.write_text("old")

    def broken(temporary):
        temporary.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.replace_atomically(target, broken)
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["file.txt"]


def test_examples_are_small_metadata_free_jpegs_per_class_beside_the_model(tmp_path):
    model = tmp_path / "models" / "export.pkl"
    photo = Image.new("RGB", (1200, 800), "red")
    photo.info["exif"] = b"Exif\x00\x00MM\x00*"
    written = write_examples(model, {"mod": [photo] * 5, "rocker": [photo], "../x": [photo]})
    assert len(written) == EXAMPLES_PER_CLASS + 1
    found = list_examples(model)
    assert list(found) == ["mod", "rocker"]
    assert found["mod"][0].parent == examples_folder(model) / "mod"
    with Image.open(found["mod"][0]) as example:
        assert max(example.size) == EXAMPLE_SIDE and "exif" not in example.info


def test_writing_examples_again_replaces_the_old_ones(tmp_path):
    model = tmp_path / "export.pkl"
    write_examples(model, {"old": [Image.new("RGB", (10, 10))]})
    write_examples(model, {"new": [Image.new("RGB", (10, 10))]})
    assert list(list_examples(model)) == ["new"]


def test_no_examples_folder_means_no_examples(tmp_path):
    assert list_examples(tmp_path / "export.pkl") == {}


def test_how_a_model_was_made_keeps_only_well_typed_values(tmp_path):
    (tmp_path / "export.json").write_text(
        json.dumps(
            {
                "seed": True,
                "extra": ["uploads/feedback", 3],
                "image_counts": {"train": {"a": 5, "b": -1, "c": 2.5, "d": True}, "valid": 4},
                "lr_find": {"valley": 1e-3, "minimum": "high", "slide": False},
                "versions": {"fastai": "2.8.12", "torch": 2},
                "training_seconds": 12,
                "command": "python train.py fit --data d",
            }
        )
    )
    card = read_card(tmp_path / "export.pkl")
    assert card.seed is None
    assert card.extra == ["uploads/feedback"]
    assert card.image_counts == {"train": {"a": 5}}
    assert card.lr_find == {"valley": 1e-3}
    assert card.versions == {"fastai": "2.8.12"}
    assert (card.training_seconds, card.command) == (12, "python train.py fit --data d")
