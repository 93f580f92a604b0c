"""`train.py predict`: classify a folder or a list of files with an exported model, as the app
does, into a predictions CSV (formats/predictions.py), optionally sorting the files by label.

The files go the app's way, not `learn.predict`'s: each is decoded by the app's decoder (draft
JPEG decoding, the pixel limit) in a pool of threads, and the app's ModelService batches them
through one forward pass with the learner's own transforms, with the settings table's defaults
(webapp/settings.py; SEAFRONT_* variables apply as they do to the app).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier.errors import ImageError, StartupError
from classifier.predictor import Prediction
from classifier.service import ModelService
from formats.atomic import replace_atomically
from formats.labels import image_files
from formats.predictions import PredictionRow, PredictionsError, PredictionsWriter, finished_files
from training.errors import InputError
from training.shards import Shard
from webapp.settings import SETTINGS, default, service_settings

NOT_SURE = "not sure"  # the folder of --sort-into for predictions below --min-confidence
CHUNK_PER_THREAD = 4  # files handed to the pool at a time, per thread: bounded memory


@dataclass(frozen=True)
class Item:
    """One file to classify: where it is, how the CSV names it, and its place under a label."""

    path: Path
    name: str
    sorted_as: Path  # relative to the label's folder of --sort-into


def list_files(
    inputs: list[Path], files_from: Path | None = None, skip: Path | None = None
) -> list[Item]:
    """The files to classify: every image under each folder, and each file named, in order.

    `files_from` lists more paths, one a line (`-`: standard input). Files under `skip` (the
    --sort-into folder) are left out, so a second run does not classify its own links.
    """
    paths = list(inputs)
    if files_from is not None:
        paths += _listed_paths(files_from)
    if not paths:
        raise InputError("name a folder or files to classify, e.g. train.py predict photos/")
    items: dict[str, Item] = {}
    for path in paths:
        if path.is_dir():
            found = [p for p in image_files(path) if skip is None or not _inside(p, skip)]
            if not found:
                raise InputError(
                    f"{path} holds no images (none in its subfolders either): name a folder of "
                    "JPEG, PNG, WebP, GIF, BMP or TIFF files"
                )
            for image in found:
                item = Item(image, str(image), image.relative_to(path))
                items.setdefault(item.name, item)
        elif path.exists():
            items.setdefault(str(path), Item(path, str(path), Path(path.name)))
        else:
            raise InputError(f"{path} not found: name existing folders or files to classify")
    return list(items.values())


def _listed_paths(files_from: Path) -> list[Path]:
    """The paths a --files-from file lists, one a line, blank lines skipped."""
    try:
        text = sys.stdin.read() if str(files_from) == "-" else files_from.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"--files-from {files_from} could not be read ({error}): pass a text file with one "
            "path a line"
        ) from None
    return [Path(line.strip()) for line in text.splitlines() if line.strip()]


def _inside(path: Path, folder: Path) -> bool:
    """True when `path` lies in `folder`."""
    return path.absolute().is_relative_to(folder.absolute())


class Sorter:
    """Puts each classified file into DIR/<label>/ (or DIR/not sure/ below the threshold) as a
    hard link, or a copy when asked or when DIR is on another file system."""

    def __init__(self, root: Path, classes: list[str], min_confidence: float, copy: bool):
        for label in classes:
            if label in ("", ".", "..") or Path(label).name != label:
                raise InputError(
                    f"the model's class {label!r} cannot name a folder of --sort-into: leave "
                    "out --sort-into and sort by the CSV's label column"
                )
        if NOT_SURE in classes and min_confidence > 0:
            raise InputError(
                f"the model has a class called {NOT_SURE!r}, the folder --min-confidence sorts "
                "unsure files into: leave out --min-confidence"
            )
        self.root, self.min_confidence, self.copy = root, min_confidence, copy
        self.counts: Counter[str] = Counter()
        self.copied_across_file_systems = False

    def folder_for(self, row: PredictionRow) -> str:
        """The folder a classified file goes into."""
        confident = row.confidence is not None and row.confidence >= self.min_confidence
        return row.label if confident else NOT_SURE

    def place(self, item: Item, row: PredictionRow) -> None:
        """Link or copy `item` into its label's folder (nothing for a file without a label)."""
        if not row.classified:
            return
        folder = self.folder_for(row)
        target = self.root / folder / item.sorted_as
        target.parent.mkdir(parents=True, exist_ok=True)
        target = self._free_name(target, item.path)
        if not target.exists():
            self._put(item.path, target)
        self.counts[folder] += 1

    def _free_name(self, target: Path, source: Path) -> Path:
        """`target`, or `name (2).jpg` and so on when another file has its name already.

        A target that is already this file (a link, or an equal copy from an interrupted run)
        is kept, so a resumed run does not sort a file twice.
        """
        candidate, number = target, 1
        while candidate.exists() and not _same_file(candidate, source):
            number += 1
            candidate = target.with_name(f"{target.stem} ({number}){target.suffix}")
        return candidate

    def _put(self, source: Path, target: Path) -> None:
        if not self.copy:
            try:
                os.link(source, target)
                return
            except OSError:  # another file system (EXDEV), or one without hard links
                self.copied_across_file_systems = True
        # a copy appears in one step, so an interrupted one is never taken for a finished one
        replace_atomically(target, lambda partial: shutil.copyfile(source, partial))


def _same_file(a: Path, b: Path) -> bool:
    """True when `a` is `b` (a hard link) or a byte-for-byte copy of it."""
    try:
        if os.path.samefile(a, b):
            return True
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


@dataclass
class Summary:
    """What a run did."""

    total: int = 0
    already_done: int = 0
    classified: int = 0
    skipped: int = 0
    seconds: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Files per second in this run."""
        return (self.classified + self.skipped) / self.seconds if self.seconds else 0.0


def app_config(**flags: Any) -> dict[str, Any]:
    """The app's settings as the app reads them: SEAFRONT_* variables, then the flags given."""
    config: dict[str, Any] = {
        setting.key: os.environ[setting.env] for setting in SETTINGS if setting.env in os.environ
    }
    config.update({key: value for key, value in flags.items() if value is not None})
    return config


def start_service(config: dict[str, Any]) -> ModelService:
    """Load the model as the app does (its file checked against its card's sha256), or fail with
    one sentence."""
    settings = service_settings(config)
    if not settings.model_path.is_file():
        raise InputError(
            f"no model at {settings.model_path}: pass --model PATH to an export.pkl, or train "
            "one with `python train.py fit --data DIR`"
        )
    try:
        service = ModelService(settings)  # chooses the device and precision: DeviceError, ...
        service.start()
    except StartupError as error:
        raise InputError(str(error)) from None
    return service


def classify_file(service: ModelService, item: Item, max_bytes: int) -> PredictionRow:
    """Read, decode and classify one file through the service; a row with a reason if it fails."""
    try:
        size = item.path.stat().st_size
        if size > max_bytes:
            return PredictionRow(
                item.name,
                reason=f"The file is {size / 1e6:.1f} MB, more than the app's upload limit of "
                f"{max_bytes / 1e6:.0f} MB (SEAFRONT_MAX_CONTENT_LENGTH): raise it to classify it.",
            )
        data = item.path.read_bytes()
    except OSError as error:
        return PredictionRow(
            item.name, reason=f"The file could not be read ({error.strerror or error})."
        )
    try:
        prediction = service.predict_bytes(data)
    except ImageError as error:
        return PredictionRow(item.name, reason=str(error))
    return row_of(item.name, prediction)


def row_of(name: str, prediction: Prediction) -> PredictionRow:
    """The CSV row of a prediction."""
    return PredictionRow(
        name,
        label=prediction.label,
        confidence=prediction.confidence,
        probabilities=prediction.probabilities,
    )


def chunks(items: list[Item], size: int) -> Iterator[list[Item]]:
    """`items` in lists of `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def classify_all(
    service: ModelService,
    items: list[Item],
    writer: PredictionsWriter,
    sorter: Sorter | None,
    threads: int,
) -> Iterator[PredictionRow]:
    """Classify `items` with `threads` decoding at once; write and sort each chunk in order."""
    max_bytes = int(app_config().get("MAX_CONTENT_LENGTH", default("MAX_CONTENT_LENGTH")))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
        try:
            for chunk in chunks(items, threads * CHUNK_PER_THREAD):
                rows = list(pool.map(lambda item: classify_file(service, item, max_bytes), chunk))
                if sorter is not None:
                    for item, row in zip(chunk, rows, strict=True):
                        sorter.place(item, row)  # before its row: a row means it is sorted
                writer.write(rows)
                yield from rows
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def predict(
    items: list[Item],
    out: Path,
    service: ModelService,
    shard: Shard,
    sorter_options: tuple[Path, float, bool] | None,
    threads: int,
) -> Summary:
    """Classify this shard's share of `items` that `out` does not hold yet; the run's summary."""
    classes = service.classes
    mine = [item for item in items if shard.takes(item.name)]
    try:
        done = finished_files(out, classes)
    except PredictionsError as error:
        raise InputError(str(error)) from None
    todo = [item for item in mine if item.name not in done]
    sorter = Sorter(sorter_options[0], classes, *sorter_options[1:]) if sorter_options else None
    summary = Summary(total=len(mine), already_done=len(mine) - len(todo))
    if summary.already_done:
        print(
            f"going on with {out}: {summary.already_done:,} of {len(mine):,} files are done",
            file=sys.stderr,
        )
    started = time.perf_counter()
    with PredictionsWriter(out, classes) as writer, _progress(len(todo)) as bar:
        for row in classify_all(service, todo, writer, sorter, threads):
            if row.classified:
                summary.classified += 1
                summary.labels[row.label] += 1
            else:
                summary.skipped += 1
            bar.update(1)
    summary.seconds = time.perf_counter() - started
    if sorter is not None:
        summary.labels = sorter.counts if sorter.counts else summary.labels
        if sorter.copied_across_file_systems:
            print(
                f"{sorter.root} is on another file system: copied instead of linked",
                file=sys.stderr,
            )
    return summary


def _progress(total: int):
    """A progress bar on standard error (tqdm): files done, their rate, the time left."""
    from tqdm import tqdm

    # a log file (a scheduler's job) gets a line every 30 s instead of a redraw a second
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        unit="image",
        file=sys.stderr,
        mininterval=0.5 if interactive else 30,
        dynamic_ncols=interactive,
        disable=total == 0,
    )
