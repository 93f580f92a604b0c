"""`train.py fit` on its defaults: lr-find picks the rate, from scratch converges, the run says
how long it will take, and the served model is never thrown away for a worse one."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import train
from formats.examples import EXAMPLE_SIDE, EXAMPLES_PER_CLASS, list_examples
from training.demo import write_digits

from .support import ROOT

# the issue's command: from scratch, resnet18 at 64 px, five epochs, no --lr (one worker
# process: the same images in the same order on every machine)
DEFAULTS = ["--no-pretrained", "--arch", "resnet18", "--size", "64", "--epochs", "5"]
DEFAULTS += ["--workers", "0"]
# a model that learns next to nothing, in seconds: 16 px, one epoch at a tiny rate
WEAK = ["--no-pretrained", "--arch", "resnet18", "--size", "16", "--epochs", "1", "--lr", "1e-5"]
WEAK += ["--workers", "0"]
ISSUE_DIGITS = ("3", "5", "8")  # 24% error on the old defaults
OTHER_DIGITS = ("4", "7", "9")
VALID_COUNT = 108  # a fifth of 3 x ~180 digits


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train on one thread, as tests/test_train_fit.py does (a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digits(tmp_path_factory, triple: tuple[str, ...]) -> Path:
    """Every handwritten scan of the three digits (about 180 each) as 32-pixel PNGs."""
    root = tmp_path_factory.mktemp("digits" + "".join(triple)) / "data"
    write_digits(root, triple, size=32)
    return root


def fit(data: Path, out: Path, *flags: str, command: str = "fit") -> SimpleNamespace:
    """`train.py fit` (or `promote`) into out/models and out/reports; what it printed and left."""
    models, reports = out / "models", out / "reports"
    argv = [command, "--models", str(models)]
    if command == "fit":
        argv += ["--data", str(data), "--reports", str(reports), *flags]
    printed = io.StringIO()
    started = time.monotonic()
    with one_torch_thread(), contextlib.redirect_stdout(printed):
        status = train.main(argv)
    return collect(argv, status, printed.getvalue(), time.monotonic() - started, models, reports)


def collect(
    argv: list[str], status: int, out: str, seconds: float, models: Path, reports: Path
) -> SimpleNamespace:
    """What one run printed, and the models it served, kept and set aside."""
    served = models / "export.pkl"
    previous = models / "previous" / "export.pkl"
    candidate = models / "candidate" / "export.pkl"
    return SimpleNamespace(
        argv=argv,
        status=status,
        out=out,
        seconds=seconds,
        models=models,
        reports=reports,
        card=json.loads((served.with_suffix(".json")).read_text()),
        served=sha256(served),
        previous=sha256(previous) if previous.is_file() else None,
        candidate=sha256(candidate) if candidate.is_file() else None,
        candidate_card=(
            json.loads(candidate.with_suffix(".json").read_text()) if candidate.is_file() else None
        ),
    )


@pytest.fixture(scope="module")
def issue_digits(tmp_path_factory) -> Path:
    return digits(tmp_path_factory, ISSUE_DIGITS)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The folder train.py runs in: models/ and reports/ go here."""
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="module")
def weak(issue_digits, project) -> SimpleNamespace:
    """A weak model, served first."""
    return fit(issue_digits, project, *WEAK)


@pytest.fixture(scope="module")
def converged(
    weak, other_digits_started, issue_digits, project, tmp_path_factory
) -> SimpleNamespace:
    """The issue's command on 3, 5 and 8, over the weak model; a copy of models/ as it left it."""
    run = fit(issue_digits, project, *DEFAULTS)
    run.snapshot = tmp_path_factory.mktemp("snapshot") / "models"
    shutil.copytree(run.models, run.snapshot)
    run.matrix = (run.reports / "confusion_matrix.png").read_bytes()
    return run


@pytest.fixture(scope="module")
def rejected(converged, issue_digits, project) -> SimpleNamespace:
    """The weak model again, now over the converged one."""
    return fit(issue_digits, project, *WEAK)


@pytest.fixture(scope="module")
def promoted(rejected, project) -> SimpleNamespace:
    """`train.py promote` after the rejected run."""
    return fit(Path(), project, command="promote")


@pytest.fixture(scope="module")
def forced(converged, issue_digits, tmp_path_factory) -> SimpleNamespace:
    """The weak model with --force, over a copy of the converged one."""
    out = tmp_path_factory.mktemp("forced")
    shutil.copytree(converged.snapshot, out / "models")
    return fit(issue_digits, out, *WEAK, "--force")


@pytest.fixture(scope="module")
def other_digits_started(weak, project, tmp_path_factory) -> SimpleNamespace:
    """The issue's command on 4, 7 and 9, over a copy of the weak model, started in a second
    process: it trains on one thread beside the 3, 5 and 8 run, so on two cores the two runs
    take the time of one."""
    out = tmp_path_factory.mktemp("other")
    shutil.copytree(project / "models", out / "models")
    data = digits(tmp_path_factory, OTHER_DIGITS)
    argv = [
        "fit",
        "--models",
        str(out / "models"),
        "--data",
        str(data),
        "--reports",
        str(out / "reports"),
        *DEFAULTS,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SEAFRONT_TORCH_THREADS": "1"}
    # its output goes to a file: a pipe nobody reads until the end could fill and stall it
    log = (out / "train.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *argv],
        cwd=out,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return SimpleNamespace(process=process, out=out, argv=argv, log=log, started=time.monotonic())


@pytest.fixture(scope="module")
def other_digits(other_digits_started) -> SimpleNamespace:
    """That run, finished: what it printed and left."""
    started = other_digits_started
    started.process.wait(timeout=900)
    started.log.close()
    return collect(
        started.argv,
        started.process.returncode,
        (started.out / "train.log").read_text(),
        time.monotonic() - started.started,
        started.out / "models",
        started.out / "reports",
    )


@pytest.mark.parametrize("run", ["converged", "other_digits"])
def test_from_scratch_without_lr_reaches_at_most_10_percent_error(run, request):
    result = request.getfixturevalue(run)
    assert result.status == 0, result.out
    assert result.card["error_rate"] <= 0.10, (result.card["learning_rates"], result.out)
    print(f"{run}: {result.card['error_rate']:.1%} error in {result.seconds:.0f} s")


def test_lr_find_chooses_the_rate_and_the_card_says_how(converged):
    card = converged.card
    assert set(card["lr_find"]) == {"minimum", "steep", "valley", "slide"}
    rate = card["learning_rates"]["from scratch"]
    assert f"learning rate {rate:.2g}: " in converged.out
    assert card["learning_rate_choice"].startswith("the larger of lr-find's valley ")


def test_the_estimate_comes_after_the_first_batches_of_lr_find(converged):
    out = converged.out
    assert "estimate: about " in out and " in all on the " in out and " s a batch)" in out
    assert out.index("estimate: about ") < out.index("learning rate ")


def test_the_card_says_how_the_model_was_made(converged, issue_digits):
    card = converged.card
    assert card["command"] == "python train.py " + " ".join(converged.argv)
    assert card["seed"] == 42 and card["labels"] is None and card["extra"] == []
    assert card["augmentation"].startswith("light: ")
    assert card["epochs"] == {"from scratch": 5}
    counts = card["image_counts"]
    assert set(counts) == {"train", "valid"}
    assert sum(counts["valid"].values()) == card["valid_count"] == VALID_COUNT
    for digit in ISSUE_DIGITS:
        scans = len(list((issue_digits / digit).iterdir()))
        assert counts["train"][digit] + counts["valid"][digit] == scans
    assert len(card["files_sha256"]) == 64
    assert card["training_seconds"] > 0
    assert {"python", "fastai", "torch", "torchvision"} <= set(card["versions"])


def test_the_file_list_fingerprint_changes_with_the_images_only(converged, rejected, other_digits):
    assert rejected.candidate_card["files_sha256"] == converged.card["files_sha256"]
    assert other_digits.card["files_sha256"] != converged.card["files_sha256"]


def test_a_better_model_is_served_and_the_one_it_replaces_is_kept(weak, converged):
    assert converged.served == converged.card["sha256"]
    assert converged.previous == weak.served
    kept = json.loads((converged.snapshot / "previous" / "export.json").read_text())
    assert kept["sha256"] == weak.served
    assert (converged.snapshot / "previous" / "examples").is_dir()
    assert (
        f"validation error on the same {VALID_COUNT} images: "
        f"served model {weak.card['error_rate']:.1%}, "
        f"new model {converged.card['error_rate']:.1%}"
    ) in converged.out
    assert f"kept in {converged.models / 'previous'}" in converged.out


def test_a_worse_model_is_set_aside_and_says_so(converged, rejected):
    assert rejected.status == 0
    assert rejected.served == converged.served  # still the converged model
    assert rejected.candidate == rejected.candidate_card["sha256"]
    assert "does worse than the served one, so the served one stays" in rejected.out
    assert "python train.py promote --models" in rejected.out and "--force" in rejected.out
    assert f"served model {converged.card['error_rate']:.1%}" in rejected.out
    assert "next: python application.py" not in rejected.out


def test_a_worse_models_reports_go_beside_it_not_over_the_served_ones(converged, rejected):
    assert (rejected.reports / "confusion_matrix.png").read_bytes() == converged.matrix
    paths = rejected.candidate_card["reports"]
    assert paths["confusion_matrix"] == str(rejected.reports / "candidate" / "confusion_matrix.png")
    assert all(Path(path).is_file() for path in paths.values())


def test_promote_serves_the_set_aside_model_and_keeps_the_served_one(converged, rejected, promoted):
    assert promoted.status == 0
    assert promoted.served == rejected.candidate
    assert promoted.previous == converged.served
    assert promoted.candidate is None
    assert promoted.card == rejected.candidate_card


def test_force_serves_a_worse_model_and_keeps_the_served_one(converged, forced):
    assert forced.served == forced.card["sha256"] != converged.served
    assert forced.previous == converged.served
    assert "but --force serves it" in forced.out


def test_a_model_of_other_classes_is_not_compared_and_is_served(weak, other_digits):
    assert other_digits.card["classes"] == list(OTHER_DIGITS)
    assert other_digits.previous == weak.served
    assert "the served model knows other classes: 3, 5, 8" in other_digits.out
    assert f"served model {weak.card['error_rate']:.1%} on its own images" in other_digits.out


def test_examples_are_a_few_small_validation_images_per_class(converged):
    examples = list_examples(converged.snapshot / "export.pkl")
    assert sorted(examples) == list(ISSUE_DIGITS)
    for files in examples.values():
        assert len(files) == EXAMPLES_PER_CLASS
        for path in files:
            with Image.open(path) as image:
                assert image.format == "JPEG" and max(image.size) <= EXAMPLE_SIDE
                assert not image.getexif()
