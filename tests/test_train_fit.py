"""`train.py fit`, `lr-find` and `demo` on scikit-learn's handwritten digits, on the CPU."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import pickle
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fastai.learner import load_learner
from PIL import Image

import train
import training.fit
from formats.examples import list_examples
from training.cli import DEMO_PER_CLASS
from training.demo import write_digits
from training.review import create_review_app
from training.review.views import EXTENSION
from webapp import create_app

DIGITS = ("0", "1", "7")
PER_CLASS = 60
# small and from scratch, as the demo: 32-pixel digits, resnet18, four epochs (seconds)
FIT_ARGS = [
    "--no-pretrained",
    "--arch",
    "resnet18",
    "--size",
    "32",
    "--epochs",
    "4",
    "--lr",
    "3e-3",
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--no-augment",
]
CARD_TYPES = {
    "name": str,
    "classes": list,
    "architecture": str,
    "pretrained": bool,
    "image_size": int,
    "train_count": int,
    "valid_count": int,
    "error_rate": float,
    "accuracy": float,
    "per_class_accuracy": dict,
    "epochs": dict,
    "learning_rates": dict,
    "fastai_version": str,
    "torch_version": str,
    "created": str,
    "sha256": str,
    "demo": bool,
    "data": str,
    "reports": dict,
    "command": str,
    "seed": int,
    "labels": type(None),  # no --labels
    "extra": list,
    "augmentation": str,
    "image_counts": dict,
    "files_sha256": str,
    "lr_find": dict,  # empty: --lr was given
    "learning_rate_choice": str,
    "training_seconds": float,
    "versions": dict,
    "processes": int,
    "precision": str,
}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: on a CPU shared with other jobs, torch's spinning threads are slow.

    train.py sets OMP_WAIT_POLICY=PASSIVE for that, but pytest has loaded torch before it
    runs, and building the app sets torch's threads to the core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def single_threaded():
    """Every test of this module trains on one thread (see `one_torch_thread`)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Class folders 0/, 1/ and 7/ of 60 handwritten-digit PNGs each."""
    root = tmp_path_factory.mktemp("digits") / "data"
    write_digits(root, DIGITS, size=32, per_class=PER_CLASS)
    return root


def spy_fit(monkeypatch) -> list:
    """Record what `fit_and_export` returns (the learner included) when train.py calls it."""
    results = []
    real = training.fit.fit_and_export

    def recording(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(training.fit, "fit_and_export", recording)
    return results


@pytest.fixture(scope="module")
def fitted(digits, tmp_path_factory) -> SimpleNamespace:
    """One `train.py fit` run through main(), with its output folders and learner."""
    out = tmp_path_factory.mktemp("fit")
    models, reports = out / "models", out / "reports"
    with pytest.MonkeyPatch.context() as monkeypatch, one_torch_thread():
        results = spy_fit(monkeypatch)
        started = time.monotonic()
        status = train.main(
            [
                "fit",
                "--data",
                str(digits),
                "--models",
                str(models),
                "--reports",
                str(reports),
                *FIT_ARGS,
            ]
        )
        seconds = time.monotonic() - started
    card = json.loads((models / "export.json").read_text())
    return SimpleNamespace(
        status=status,
        models=models,
        reports=reports,
        card=card,
        learner=results[0].learner,
        seconds=seconds,
        data=digits,
    )


def test_fit_learns_digits_to_at_least_90_percent(fitted):
    assert fitted.status == 0
    assert fitted.card["accuracy"] >= 0.9, fitted.card
    assert all(value >= 0.8 for value in fitted.card["per_class_accuracy"].values())
    print(f"fit took {fitted.seconds:.1f} s")


def test_model_card_has_every_field_of_the_convention(fitted):
    card = fitted.card
    assert {key: type(value) for key, value in card.items()} == CARD_TYPES
    assert card["classes"] == list(DIGITS)
    assert set(card["per_class_accuracy"]) == set(DIGITS)
    assert card["train_count"] + card["valid_count"] == PER_CLASS * len(DIGITS)
    assert card["valid_count"] == round(0.2 * PER_CLASS * len(DIGITS))
    assert card["error_rate"] == pytest.approx(1 - card["accuracy"])
    assert (card["architecture"], card["pretrained"], card["image_size"]) == ("resnet18", False, 32)
    assert card["epochs"] == {"from scratch": 4}
    assert card["learning_rates"] == {"from scratch": 3e-3}
    assert (card["lr_find"], card["learning_rate_choice"]) == ({}, "given with --lr")
    assert card["augmentation"].startswith("none: ")
    assert card["demo"] is False and card["name"] == "data" and card["data"] == str(fitted.data)
    assert (card["processes"], card["precision"]) == (1, "fp32")
    created = datetime.fromisoformat(card["created"])
    assert created.utcoffset() == timedelta(0)


def test_model_card_holds_the_sha256_of_export_pkl(fitted):
    digest = hashlib.sha256((fitted.models / "export.pkl").read_bytes()).hexdigest()
    assert fitted.card["sha256"] == digest


@pytest.mark.parametrize("report", ["confusion_matrix", "top_losses", "losses"])
def test_reports_are_real_png_files(fitted, report):
    path = Path(fitted.card["reports"][report])
    assert path == fitted.reports / f"{report}.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_top_losses_csv_lists_every_data_image_worst_first(fitted):
    path = Path(fitted.card["reports"]["top_losses_csv"])
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["file", "split", "actual", "predicted", "probability", "loss"]
    losses = [float(row["loss"]) for row in rows]
    assert losses == sorted(losses, reverse=True)
    splits = [row["split"] for row in rows]
    assert splits.count("valid") == fitted.card["valid_count"]
    assert splits.count("train") == fitted.card["train_count"]
    for row in rows:
        assert (fitted.data / row["file"]).is_file()
        assert row["actual"] == Path(row["file"]).parent.name
        assert 0 <= float(row["probability"]) <= 1


def test_the_app_predicts_what_the_learner_predicted_at_the_end_of_training(fitted, tmp_path):
    app = create_app(
        {
            "MODEL_PATH": str(fitted.models / "export.pkl"),
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )
    try:
        client = app.test_client()
        for digit in DIGITS:
            image = sorted((fitted.data / digit).iterdir())[-1]
            label, _, expected = fitted.learner.predict(image)
            answer = client.post(
                "/api/predict",
                content_type="multipart/form-data",
                data={"file": (io.BytesIO(image.read_bytes()), image.name)},
            )
            assert answer.status_code == 200
            body = answer.get_json()
            assert body["label"] == label
            assert body["probabilities"] == pytest.approx(
                dict(zip(fitted.card["classes"], expected.tolist(), strict=True)), abs=1e-4
            )
    finally:
        app.extensions["seafront.model"].stop()


def test_export_pkl_needs_fastai_and_torch_but_not_the_training_code(fitted):
    modules = set()

    class RecordingUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            modules.add(module)
            return super().find_class(module, name)

    recording = types.ModuleType("recording_pickle")
    recording.__dict__.update(pickle.__dict__)
    recording.Unpickler = RecordingUnpickler
    torch.load(fitted.models / "export.pkl", pickle_module=recording, weights_only=False)
    roots = {module.split(".")[0] for module in modules}
    assert {"fastai", "torch"} <= roots
    assert not roots & {"training", "train", "__main__", "tests"}, sorted(modules)


def test_the_review_page_knows_every_file_of_top_losses_csv(fitted):
    app = create_review_app(fitted.data, fitted.reports)
    review = app.extensions[EXTENSION]
    assert len(review.top_losses) == fitted.card["train_count"] + fitted.card["valid_count"]
    assert all(row.file in review.state.start_labels for row in review.top_losses)


def test_lr_find_writes_a_png_and_prints_suggestions(digits, tmp_path, capsys):
    reports = tmp_path / "reports"
    status = train.main(
        [
            "lr-find",
            "--data",
            str(digits),
            "--reports",
            str(reports),
            "--iterations",
            "30",
            "--no-pretrained",
            "--arch",
            "resnet18",
            "--size",
            "16",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--no-augment",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    with Image.open(reports / "lr_find.png") as image:
        assert image.format == "PNG"
    assert "suggested learning rates: minimum" in out
    assert all(name in out for name in ("steep", "valley", "slide"))
    # the next step trains the same thing: every flag that matters is repeated
    assert (
        f"next: python train.py fit --data {digits} --arch resnet18 --size 16 --no-pretrained "
        f"--augment none --batch-size 8 --workers 0 --reports {reports} --lr "
    ) in out


def test_labels_extras_and_unfreezing_end_up_in_the_card(digits, tmp_path):
    """A second, shorter run: cleaned.csv relabels and drops images, feedback adds some."""
    rows = []
    for digit in DIGITS:
        names = sorted(p.name for p in (digits / digit).iterdir())
        rows += [(f"{digit}/{name}", f"digit {digit}") for name in names[:20]]
    labels = tmp_path / "cleaned.csv"
    with labels.open("w", newline="") as handle:
        csv.writer(handle).writerows([("fname", "label"), *rows])
    feedback = tmp_path / "feedback"
    write_digits(tmp_path / "scans", DIGITS, size=32, per_class=3)
    feedback.mkdir()
    for digit in DIGITS:
        (tmp_path / "scans" / digit).rename(feedback / f"digit {digit}")
    models = tmp_path / "models"
    argv = [
        "fit",
        "--data",
        str(digits),
        "--labels",
        str(labels),
        "--extra",
        str(feedback),
        "--models",
        str(models),
        "--reports",
        str(tmp_path / "reports"),
        *FIT_ARGS,
        "--epochs",
        "1",
        "--unfreeze-epochs",
        "1",
        "--lr-max",
        "1e-4:1e-3",
        "--name",
        "relabelled digits",
    ]
    assert train.main(argv) == 0
    card = json.loads((models / "export.json").read_text())
    assert card["name"] == "relabelled digits"
    assert card["classes"] == ["digit 0", "digit 1", "digit 7"]
    assert card["valid_count"] == 12  # a fifth of the 60 listed images
    assert card["train_count"] == 48 + 9  # the rest, plus every feedback image
    assert card["epochs"] == {"from scratch": 1, "discriminative": 1}
    assert card["learning_rates"] == {"from scratch": 3e-3, "discriminative": [1e-4, 1e-3]}
    assert card["labels"] == str(labels) and card["extra"] == [str(feedback)]
    assert card["image_counts"]["extra"] == {f"digit {digit}": 3 for digit in DIGITS}
    with open(tmp_path / "reports" / "top_losses.csv", newline="") as handle:
        files = {row["file"] for row in csv.DictReader(handle)}
    assert files == {fname for fname, _ in rows}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> SimpleNamespace:
    """`train.py demo --epochs 1 --models ELSEWHERE`, run in an empty folder."""
    folder = tmp_path_factory.mktemp("demo")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "models"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, one_torch_thread():
        monkeypatch.chdir(folder)
        with contextlib.redirect_stdout(printed):
            status = train.main(["demo", "--epochs", "1", "--models", str(elsewhere)])
    return SimpleNamespace(
        status=status,
        out=printed.getvalue(),
        folder=folder,
        models=elsewhere,
        card=json.loads((elsewhere / "export.json").read_text()),
    )


def test_demo_writes_digits_and_exports_a_model_marked_as_demo(demo):
    assert demo.status == 0
    card = demo.card
    assert card["demo"] is True and card["name"] == "digits demo"
    assert card["classes"] == ["0", "1", "7"]
    assert card["data"] == "data/digits_demo"
    assert card["command"] == f"python train.py demo --epochs 1 --models {demo.models}"
    assert (demo.models / "export.pkl").is_file()
    for digit in card["classes"]:
        pngs = list((demo.folder / "data" / "digits_demo" / digit).glob("*.png"))
        assert len(pngs) == DEMO_PER_CLASS


def test_demo_leaves_grad_cam_a_feature_map_of_at_least_4x4(demo):
    learner = load_learner(demo.models / "export.pkl", cpu=True)
    side = demo.card["image_size"]
    with torch.no_grad():
        features = learner.model[0].eval()(torch.zeros(1, 3, side, side))
    assert min(features.shape[-2:]) >= 4, features.shape


def test_demo_saves_examples_of_each_class_beside_the_model(demo):
    assert sorted(list_examples(demo.models / "export.pkl")) == demo.card["classes"]


def test_demo_elsewhere_says_how_to_serve_that_folders_model(demo):
    assert demo.out.rstrip().splitlines()[-2] == (
        f"next: python application.py --model {demo.models / 'export.pkl'}"
    )
