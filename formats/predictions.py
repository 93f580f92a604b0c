"""The predictions CSV that `train.py predict` writes: one row per file, as it is classified.

Columns: `file` (the path as the command named it), `label` (the most likely class),
`confidence` (its probability), one `p(CLASS)` column per class in the model's order, and
`reason`, which is empty unless the file could not be classified: then it says why, and the
label, confidence and probabilities are empty.

Rows are appended batch by batch and flushed, so an interrupted run keeps every row it wrote;
`PredictionsWriter` opens an existing file to go on with it (after dropping a last line that
was cut short), and `finished_files` says which files it already holds. Shards of one job
(`--shard I/N`) write files with the same header, merged by keeping the first one's header.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

FIRST_COLUMNS = ("file", "label", "confidence")
REASON_COLUMN = "reason"
DIGITS = 6  # probabilities are written rounded to 6 decimals, as top_losses.csv is


class PredictionsError(ValueError):
    """A predictions file that cannot be continued; the message says what to do."""


def probability_column(label: str) -> str:
    """The column of one class's probability: `p(mod)`."""
    return f"p({label})"


def header(classes: list[str]) -> list[str]:
    """The columns of a predictions file for a model with `classes`."""
    return [*FIRST_COLUMNS, *(probability_column(label) for label in classes), REASON_COLUMN]


@dataclass(frozen=True)
class PredictionRow:
    """One file's row: its prediction, or the reason it has none."""

    file: str
    label: str = ""
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def classified(self) -> bool:
        """True when the file got a prediction (no reason)."""
        return not self.reason

    def cells(self, classes: list[str]) -> list[str]:
        """The row's values in the order of `header(classes)`."""

        def number(value: float | None) -> str:
            return "" if value is None else f"{round(value, DIGITS):g}"

        return [
            self.file,
            self.label,
            number(self.confidence),
            *(number(self.probabilities.get(label)) for label in classes),
            self.reason,
        ]


def classes_of(columns: list[str]) -> list[str] | None:
    """The classes a predictions header names, or None when it is not such a header."""
    middle = columns[len(FIRST_COLUMNS) : -1]
    if tuple(columns[: len(FIRST_COLUMNS)]) != FIRST_COLUMNS or columns[-1:] != [REASON_COLUMN]:
        return None
    if not all(name.startswith("p(") and name.endswith(")") for name in middle):
        return None
    return [name[2:-1] for name in middle]


def read_predictions(path: Path) -> tuple[list[str], list[PredictionRow]]:
    """The classes and rows of a predictions file; PredictionsError when it is not one."""
    with Path(path).open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    classes = classes_of(rows[0]) if rows else None
    if classes is None:
        raise PredictionsError(
            f"{path} is not a predictions file of `train.py predict` (its first line is not "
            f"{','.join(header(['CLASS']))}): pass another --out, or delete it"
        )
    width = len(header(classes))
    parsed = []
    for number, cells in enumerate(rows[1:], start=2):
        if len(cells) != width:
            raise PredictionsError(
                f"{path} line {number} has {len(cells)} values instead of {width}: delete that "
                "line (or the file) and run the same command again"
            )
        parsed.append(_row(cells, classes))
    return classes, parsed


def _row(cells: list[str], classes: list[str]) -> PredictionRow:
    """A PredictionRow from the cells of one line."""
    file, label, confidence, *probabilities, reason = cells

    def number(text: str) -> float | None:
        return float(text) if text else None

    return PredictionRow(
        file=file,
        label=label,
        confidence=number(confidence),
        probabilities={
            name: value
            for name, text in zip(classes, probabilities, strict=True)
            if (value := number(text)) is not None
        },
        reason=reason,
    )


def finished_files(path: Path, classes: list[str]) -> set[str]:
    """The files a predictions file already holds a row for, with or without a prediction.

    None of them when the file does not exist; PredictionsError when it belongs to a model
    with other classes, or is not a predictions file.
    """
    if not Path(path).exists():
        return set()
    _drop_cut_line(Path(path))
    found, rows = read_predictions(path)
    if found != classes:
        raise PredictionsError(
            f"{path} holds predictions for the classes {', '.join(found)}, and this model's are "
            f"{', '.join(classes)}: pass another --out, or delete it to start again"
        )
    return {row.file for row in rows}


def _drop_cut_line(path: Path) -> None:
    """Cut a last line that a killed run left without its newline (it is done again)."""
    with path.open("rb+") as file:
        data = file.read()
        if data and not data.endswith(b"\n"):
            file.truncate(data.rfind(b"\n") + 1)


class PredictionsWriter:
    """Appends rows to a predictions file, writing the header first when it is new."""

    def __init__(self, path: Path, classes: list[str]):
        self.path = Path(path)
        self.classes = classes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="", encoding="utf-8")
        if new:
            self._write([header(classes)])

    def write(self, rows: list[PredictionRow]) -> None:
        """Append `rows` and hand them to the operating system, so a killed run keeps them."""
        self._write([row.cells(self.classes) for row in rows])

    def _write(self, lines: list[list[str]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(lines)
        # one write per batch: a run killed in between leaves whole lines only
        self._file.write(buffer.getvalue())
        self._file.flush()

    def close(self) -> None:
        """Flush the file to disk and close it."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> PredictionsWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
