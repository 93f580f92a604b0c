"""`train.py predict`: a folder classified the app's way into a CSV; resumed, sharded, sorted."""

from __future__ import annotations

import csv
import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train
from formats.predictions import DIGITS, header, read_predictions
from training.predict import NOT_SURE, Shard

from .imagemaker import CLASSES, encode, make_picture
from .support import ROOT

BROKEN = "broken.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of the tiny model's pictures in nested folders, a broken file and a hidden one."""
    root = tmp_path_factory.mktemp("photos") / "photos"
    rng = np.random.default_rng(7)
    for index in range(10):
        label = CLASSES[index % 2]
        folder = root / ("a" if index < 5 else "b/deeper")
        folder.mkdir(parents=True, exist_ok=True)
        picture = make_picture(label, rng, (40 + 3 * index, 60 - 2 * index))
        fmt, suffix = ("JPEG", ".jpg") if index % 3 == 0 else ("PNG", ".png")
        (folder / f"{label}{index}{suffix}").write_bytes(encode(picture, fmt))
    (root / BROKEN).write_text("not a picture at all")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "skipped.png").write_bytes(encode(make_picture("mod", rng)))
    return root


def image_count(root: Path) -> int:
    """The pictures under `root` that predict should find (the broken one too, by its name)."""
    return len([p for p in root.rglob("*") if p.is_file() and ".hidden" not in p.parts])


def run(model_path: Path, *args: str) -> int:
    """`train.py predict` with the tiny model."""
    return train.main(["predict", "--model", str(model_path), *args])


def rows_of(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a predictions CSV by file."""
    with path.open(newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty folder, where predictions.csv is written by default."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def predicted(photos, model_path, tmp_path_factory) -> dict[str, dict[str, str]]:
    """One run over the whole folder: its CSV's rows by file."""
    out = tmp_path_factory.mktemp("predicted") / "predictions.csv"
    assert run(model_path, str(photos), "--out", str(out)) == 0
    return rows_of(out)


def test_every_image_gets_one_row_with_each_classs_probability(predicted, photos):
    assert len(predicted) == image_count(photos)
    first = next(iter(predicted.values()))
    assert list(first) == header(list(CLASSES))
    for name, row in predicted.items():
        if name.endswith(BROKEN):
            continue
        probabilities = {label: float(row[f"p({label})"]) for label in CLASSES}
        assert row["label"] == max(probabilities, key=probabilities.__getitem__)
        assert float(row["confidence"]) == probabilities[row["label"]]
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert row["reason"] == ""


def test_the_probabilities_are_the_apps_answers_for_the_same_files(predicted, client):
    for name, row in predicted.items():
        if name.endswith(BROKEN):
            continue
        answer = client.post(
            "/api/predict", data={"file": (io.BytesIO(Path(name).read_bytes()), "photo")}
        ).get_json()
        assert row["label"] == answer["label"]
        for label in CLASSES:
            assert float(row[f"p({label})"]) == pytest.approx(
                answer["probabilities"][label], abs=1e-5
            )


def test_an_unreadable_file_is_skipped_with_the_reason_and_no_label(predicted, photos):
    row = predicted[str(photos / BROKEN)]
    assert row["label"] == row["confidence"] == ""
    assert "could not be read as an image" in row["reason"]


def test_hidden_folders_are_skipped_and_names_are_paths_as_given(predicted, photos):
    assert all(name.startswith(str(photos)) and ".hidden" not in name for name in predicted)


def test_a_list_of_files_classifies_just_those_and_shows_progress(
    photos, model_path, in_tmp, capsys
):
    chosen = sorted(str(p) for p in (photos / "a").iterdir())[:2]
    (in_tmp / "list.txt").write_text("\n".join(chosen) + "\n\n")
    assert run(model_path, "--files-from", "list.txt") == 0
    assert sorted(rows_of(in_tmp / "predictions.csv")) == chosen
    assert "2/2" in capsys.readouterr().err  # the progress bar's last state


def test_an_interrupted_run_goes_on_without_redoing_finished_files(
    photos, model_path, in_tmp, predicted, capsys
):
    done = sorted(predicted)[:4]
    marker = "0.123456"  # no real run writes this confidence: a redone row would lose it
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header(list(CLASSES)), lineterminator="\n")
    writer.writeheader()
    writer.writerows(dict(predicted[name], confidence=marker) for name in done)
    # a killed run's last row, cut short: it is dropped and done again
    half = sorted(predicted)[4]
    (in_tmp / "predictions.csv").write_text(buffer.getvalue() + f"{half},mo")
    assert run(model_path, str(photos)) == 0
    rows = rows_of(in_tmp / "predictions.csv")
    assert sorted(rows) == sorted(predicted)
    assert [rows[name]["confidence"] for name in done] == [marker] * 4
    assert rows[half] == predicted[half]
    captured = capsys.readouterr()
    assert f"classified {len(predicted) - 4} files" in captured.out
    assert "4 done before" in captured.out


def test_sort_into_links_each_file_into_its_labels_folder_and_unsure_ones_apart(
    photos, model_path, in_tmp, predicted
):
    confidences = sorted(float(r["confidence"]) for r in predicted.values() if r["confidence"])
    # in the widest gap between two files' confidences: the CSV's are rounded, the sorter's are
    # not, so a threshold must sit more than a rounding step from both ends to fall the same way
    low, high = max(itertools.pairwise(confidences), key=lambda pair: pair[1] - pair[0])
    assert high - low > 4 * 0.5 * 10**-DIGITS, "the model's confidences are too close to split"
    threshold = (low + high) / 2
    args = [str(photos), "--sort-into", "sorted", "--min-confidence", str(threshold)]
    assert run(model_path, *args) == 0
    for name, row in predicted.items():
        source = Path(name)
        placed = list((in_tmp / "sorted").rglob(source.name))
        if not row["label"]:
            assert placed == []
            continue
        folder = row["label"] if float(row["confidence"]) >= threshold else NOT_SURE
        relative = source.relative_to(photos)
        assert placed == [in_tmp / "sorted" / folder / relative]
        assert os.path.samefile(placed[0], source)  # a hard link: no second copy on disk
    assert run(model_path, *args) == 0  # a second run finds everything done
    assert len([p for p in (in_tmp / "sorted").rglob("*") if p.is_file()]) == len(predicted) - 1


def test_sort_into_with_copy_copies(photos, model_path, in_tmp):
    assert run(model_path, str(photos / "a"), "--sort-into", "out", "--copy") == 0
    for copied in (p for p in (in_tmp / "out").rglob("*") if p.is_file()):
        source = photos / "a" / copied.name
        assert copied.read_bytes() == source.read_bytes()
        assert not os.path.samefile(copied, source)


def test_shards_split_the_files_exactly_and_the_readmes_merge_joins_them(
    photos, model_path, in_tmp, predicted
):
    shards = 3
    for index in range(shards):
        assert run(model_path, str(photos), "--shard", f"{index}/{shards}") == 0
    parts = [rows_of(in_tmp / f"predictions.shard-{i}-of-{shards}.csv") for i in range(shards)]
    assert sum(len(part) for part in parts) == len(predicted)
    assert set().union(*parts) == set(predicted)
    # the README's merge command, as it is written there (for 4 shards, into predictions.csv)
    readme = (ROOT / "README.md").read_text()
    merge = next(line for line in readme.splitlines() if line.startswith("awk "))
    merge = merge.replace("-of-4.csv", f"-of-{shards}.csv").replace("predictions.csv", "merged.csv")
    subprocess.run(merge, shell=True, cwd=in_tmp, check=True)
    classes, rows = read_predictions(in_tmp / "merged.csv")
    assert classes == list(CLASSES) and {row.file for row in rows} == set(predicted)


NAMES = ["photos/a.jpg", "photos/b/c.png", "x", "ünïcode/ß.jpg", "with space.png"]


@pytest.mark.parametrize("count", [1, 2, 5])
def test_each_file_belongs_to_exactly_one_shard(count):
    for name in NAMES:
        assert sum(Shard(index, count).takes(name) for index in range(count)) == 1


def test_a_files_shard_is_the_same_in_every_process():
    """Jobs on other machines compute their share alone: it cannot depend on the process."""
    owners = [[Shard(index, 5).takes(name) for index in range(5)] for name in NAMES]
    probe = (
        "from training.shards import Shard; "
        f"print([[Shard(i, 5).takes(n) for i in range(5)] for n in {NAMES!r}])"
    )
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout == f"{owners}\n"


def not_an_export(tmp: Path) -> list[str]:
    (tmp / "model.pkl").write_text("I am not a model")
    return ["predict", "--model", str(tmp / "model.pkl"), str(tmp / "photos")]


def with_photos(tmp: Path, *args: str) -> list[str]:
    return ["predict", str(tmp / "photos"), *args]


def empty_folder(tmp: Path) -> list[str]:
    (tmp / "empty" / "sub").mkdir(parents=True)
    (tmp / "empty" / "notes.txt").write_text("no pictures here")
    return ["predict", str(tmp / "empty")]


def other_classes_csv(tmp: Path) -> list[str]:
    (tmp / "old.csv").write_text("file,label,confidence,p(cat),p(dog),reason\n")
    return with_photos(tmp, "--out", str(tmp / "old.csv"))


def foreign_csv(tmp: Path) -> list[str]:
    (tmp / "other.csv").write_text("fname,label\na.jpg,mod\n")
    return with_photos(tmp, "--out", str(tmp / "other.csv"))


BAD_PREDICT = [
    pytest.param(lambda t: with_photos(t, "--shard", "3/2"), "--shard 3/2", id="shard past N"),
    pytest.param(lambda t: with_photos(t, "--shard", "1/0"), "--shard 1/0", id="shard of 0"),
    pytest.param(lambda t: with_photos(t, "--shard", "half"), "is not I/N", id="shard not I/N"),
    pytest.param(empty_folder, "holds no images", id="folder without images"),
    pytest.param(lambda t: ["predict", str(t / "nowhere")], "not found", id="missing folder"),
    pytest.param(lambda t: ["predict"], "name a folder or files", id="nothing to classify"),
    pytest.param(not_an_export, "is not a loadable fastai export", id="model not an export"),
    pytest.param(
        lambda t: ["predict", "--model", str(t / "none.pkl"), str(t / "photos")],
        "no model at",
        id="missing model",
    ),
    pytest.param(
        lambda t: with_photos(t, "--min-confidence", "0.8"),
        "add --sort-into",
        id="min-confidence without sort-into",
    ),
    pytest.param(
        lambda t: with_photos(t, "--sort-into", "s", "--min-confidence", "2"),
        "from 0 to 1",
        id="min-confidence above 1",
    ),
    pytest.param(lambda t: with_photos(t, "--copy"), "add --sort-into", id="copy alone"),
    pytest.param(lambda t: with_photos(t, "--out", str(t)), "is a folder", id="out is a folder"),
    pytest.param(
        lambda t: with_photos(t, "--files-from", str(t / "none.txt")),
        "could not be read",
        id="missing files-from list",
    ),
    pytest.param(lambda t: with_photos(t, "--device", "tpu"), "Unknown device", id="bad device"),
    pytest.param(other_classes_csv, "cat, dog", id="csv of another model"),
    pytest.param(foreign_csv, "not a predictions file", id="csv of another kind"),
]


@pytest.mark.parametrize(("make_argv", "message"), BAD_PREDICT)
def test_predict_misuse_ends_in_one_sentence_and_exit_status_2(
    make_argv, message, tmp_path, monkeypatch, model_path, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAFRONT_MODEL_PATH", str(model_path))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "one.png").write_bytes(
        encode(make_picture("mod", np.random.default_rng(0)))
    )
    status = train.main(make_argv(tmp_path))
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "predictions.csv").exists()


def test_the_help_names_the_folder_that_predict_sorts_unsure_files_into():
    import training.cli

    assert training.cli.NOT_SURE == NOT_SURE  # --help says it without importing torch
