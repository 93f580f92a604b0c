"""Which class each image of a data folder belongs to, and the two CSV files that say so.

- **Folders**: an image's label is the name of the top-level folder it sits in under the data
  folder, however deep below it (`mod/2019/x.jpg` is a `mod`); images directly in the data
  folder, and hidden folders, have none. Training and the review page both label this way.
- **cleaned.csv** (`fname,label`, `fname` relative to the data folder, `/`-separated): the labels
  after a review, which `train.py fit --labels` trains on.
- **top_losses.csv**: every image with its split, actual and predicted class, the probability of
  the prediction and the loss, highest loss first, as `train.py fit` writes it to `reports/`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass
from pathlib import Path, PurePosixPath

from .atomic import write_atomically

LABELS_FILE = "cleaned.csv"
LABELS_COLUMNS = ("fname", "label")
TOP_LOSSES_FILE = "top_losses.csv"
TOP_LOSSES_COLUMNS = ("file", "split", "actual", "predicted", "probability", "loss")


class LabelsError(ValueError):
    """A labels or report file that cannot be used; the message says how to fix it."""


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder`, recursively and sorted; hidden folders are skipped."""
    # fastai's own lister, so that the images found here are those fastai's pipeline would load
    from fastai.data.transforms import get_image_files

    return sorted(Path(path) for path in get_image_files(folder))


def folder_label(fname: str) -> str | None:
    """The label of the image `fname` (relative to the data folder): its top-level folder."""
    parts = PurePosixPath(fname).parts
    return parts[0] if len(parts) > 1 and not parts[0].startswith(".") else None


def labels_from_folders(data_dir: Path) -> dict[str, str]:
    """Every labelled image under `data_dir` (`fname` relative and `/`-separated) -> its label."""
    labels = {}
    for path in image_files(data_dir):
        fname = path.relative_to(data_dir).as_posix()
        label = folder_label(fname)
        if label is not None:
            labels[fname] = label
    return labels


def read_labels_csv(path: Path) -> dict[str, str]:
    """The `fname,label` rows of a cleaned.csv, in file order; LabelsError for a malformed file."""
    with Path(path).open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if not set(LABELS_COLUMNS) <= set(reader.fieldnames or ()):
            raise LabelsError(
                f"{path} has no fname,label header: the labels file needs the columns fname and "
                "label, as the review page writes them"
            )
        labels = {}
        for row in reader:
            fname, label = (row.get("fname") or "").strip(), (row.get("label") or "").strip()
            if not fname or not label:
                raise LabelsError(
                    f"{path} line {reader.line_num} lacks a fname or a label: every row needs both"
                )
            labels[fname] = label
    return labels


def write_labels_csv(path: Path, labels: dict[str, str]) -> Path:
    """Write `labels` as a cleaned.csv in one step, sorted by file name so diffs stay small."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LABELS_COLUMNS)
    writer.writerows(sorted(labels.items()))
    return write_atomically(Path(path), out.getvalue())


@dataclass(frozen=True)
class TopLoss:
    """One row of top_losses.csv: an image, how the model saw it and how wrong it was."""

    file: str
    split: str
    actual: str
    predicted: str
    probability: float
    loss: float


def write_top_losses(path: Path, rows: list[TopLoss]) -> Path:
    """Write `rows`, highest loss first, as top_losses.csv in one step."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TOP_LOSSES_COLUMNS)
    writer.writerows(astuple(row) for row in sorted(rows, key=lambda row: -row.loss))
    return write_atomically(Path(path), out.getvalue())


def read_top_losses(path: Path) -> list[TopLoss]:
    """The rows of a top_losses.csv in file order (highest loss first); LabelsError if unusable."""
    fix = "run `python train.py fit --data DIR` to write it again"
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path} not found: {fix}")
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if not set(TOP_LOSSES_COLUMNS) <= set(reader.fieldnames or ()):
            raise LabelsError(f"{path} lacks the columns {','.join(TOP_LOSSES_COLUMNS)}: {fix}")
        try:
            return [
                TopLoss(
                    file=row["file"],
                    split=row["split"],
                    actual=row["actual"],
                    predicted=row["predicted"],
                    probability=float(row["probability"]),
                    loss=float(row["loss"]),
                )
                for row in reader
            ]
        except ValueError as error:
            raise LabelsError(f"{path} line {reader.line_num}: {error}: {fix}") from None
