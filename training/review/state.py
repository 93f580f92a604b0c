"""The review of a data folder: its starting labels and the decisions on them.

Saved as DIR/review_decisions.json (this module owns that file) and, after every decision, as
DIR/cleaned.csv (written through formats.labels, which owns that format).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from formats.atomic import write_atomically
from formats.labels import (
    LABELS_FILE,
    LabelsError,
    labels_from_folders,
    read_labels_csv,
    write_labels_csv,
)

DECISIONS_FILE = "review_decisions.json"
DECISIONS_FORMAT = 1
ACTIONS = ("keep", "relabel", "delete")

log = logging.getLogger(__name__)


def resolve_inside(folder: Path, relative: str) -> Path:
    """The real path of `relative` under `folder`; ValueError if it leads outside `folder`."""
    root = folder.resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, ValueError) as error:  # a NUL byte, a symlink loop
        raise ValueError(f"{relative!r} is not a usable path: {error}") from None
    if path == root or not path.is_relative_to(root):
        raise ValueError(f"{relative!r} is not a file inside {folder}")
    return path


def entry_inside(folder: Path, relative: str) -> Path:
    """The folder entry `relative` names under `folder`, its last part not followed: for a
    symlink, the link and not its target. ValueError if its folder is not inside `folder`."""
    path = Path(relative)
    if path.is_absolute() or path.name in ("", ".", ".."):
        raise ValueError(f"{relative!r} is not a file inside {folder}")
    # the folders on the way may be symlinks, but they must lead to a folder inside `folder`
    if path.parent == Path("."):
        return folder.resolve() / path.name
    return resolve_inside(folder, str(path.parent)) / path.name


@dataclass(frozen=True)
class Decision:
    """What the reviewer chose for one image: keep it, give it `label`, or delete it."""

    action: str
    label: str | None = None


class ReviewState:
    """The starting labels of a data folder, the decisions on them, and both files they make.

    The decisions file also holds the starting labels: once cleaned.csv has been rewritten it can
    no longer tell what an undo should go back to.
    """

    def __init__(
        self, data_dir: Path, start_labels: dict[str, str], decisions: dict[str, Decision]
    ):
        self.data_dir = data_dir
        self.start_labels = start_labels
        self.decisions = decisions
        # gunicorn serves the page from several threads; decisions are read-modify-write
        self._lock = threading.Lock()

    @classmethod
    def load(cls, data_dir: Path) -> ReviewState:
        """The saved review of `data_dir`, or a new one from its cleaned.csv or class folders."""
        if not data_dir.is_dir():
            raise LabelsError(f"{data_dir} is not a folder: pass the data folder you trained on")
        decisions_path = data_dir / DECISIONS_FILE
        if decisions_path.is_file():
            return cls._from_decisions_file(data_dir, decisions_path)
        if (data_dir / LABELS_FILE).is_file():
            return cls(data_dir, read_labels_csv(data_dir / LABELS_FILE), {})
        labels = labels_from_folders(data_dir)
        if not labels:
            raise LabelsError(f"{data_dir} holds no images: put them in {data_dir}/<label>/")
        return cls(data_dir, labels, {})

    @classmethod
    def _from_decisions_file(cls, data_dir: Path, path: Path) -> ReviewState:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["format"] != DECISIONS_FORMAT:
                raise ValueError(f"format {saved['format']}, expected {DECISIONS_FORMAT}")
            decisions = {
                fname: Decision(entry["action"], entry.get("label"))
                for fname, entry in saved["decisions"].items()
            }
            for fname, decision in decisions.items():
                if decision.action not in ACTIONS or (
                    decision.action == "relabel" and not decision.label
                ):
                    raise ValueError(f"{fname}: {decision} is no decision this page makes")
            return cls(data_dir, dict(saved["start_labels"]), decisions)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise LabelsError(
                f"{path} cannot be read ({error!r}): delete it to start the review afresh "
                f"from {LABELS_FILE}"
            ) from None

    def current_labels(self, decisions: dict[str, Decision] | None = None) -> dict[str, str]:
        """Every image's label after `decisions` (those so far); deleted images are left out."""
        decisions = self.decisions if decisions is None else decisions
        labels = {}
        for fname, label in self.start_labels.items():
            decision = decisions.get(fname)
            if decision is None or decision.action == "keep":
                labels[fname] = label
            elif decision.action == "relabel" and decision.label:
                labels[fname] = decision.label
        return labels

    def marked_for_deletion(self) -> list[str]:
        """The images decided `delete`, by file name."""
        return sorted(f for f, decision in self.decisions.items() if decision.action == "delete")

    def decide(self, fname: str, action: str, label: str | None = None) -> Decision:
        """Record `action` on `fname` (replacing an earlier one) and save both files."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: choose one of {', '.join(ACTIONS)}")
        if action == "relabel" and not label:
            raise ValueError("relabel needs a label: choose the image's class")
        with self._lock:
            if fname not in self.start_labels:
                raise KeyError(f"{fname} is not an image of {self.data_dir}")
            if action == "relabel" and label == self.start_labels[fname]:
                action = "keep"  # "relabel" to the label it has is a keep, and shows as one
            decision = Decision(action, label if action == "relabel" else None)
            self._save({**self.decisions, fname: decision})
        log.info("%s %s%s", action, fname, f" -> {label}" if action == "relabel" else "")
        return decision

    def undo(self, fname: str) -> None:
        """Forget the decision on `fname` so it has its starting label again, and save."""
        with self._lock:
            if fname in self.decisions:
                self._save({f: d for f, d in self.decisions.items() if f != fname})
                log.info("undo %s", fname)

    def apply_deletions(self, fnames: list[str]) -> list[str]:
        """Delete from disk those of `fnames` still marked for deletion; returns those deleted."""
        with self._lock:
            marked = {f for f, d in self.decisions.items() if d.action == "delete"}
            # every path is checked before the first file goes: files stay strictly inside the
            # data folder, whatever the decisions file says, and a symlink goes, not its target
            paths = {f: entry_inside(self.data_dir, f) for f in fnames if f in marked}
            deleted = []
            try:
                for fname, path in paths.items():
                    path.unlink(missing_ok=True)
                    del self.decisions[fname], self.start_labels[fname]
                    deleted.append(fname)
                    log.info("deleted %s", fname)
            finally:
                if deleted:  # even when one file could not go, record those that did
                    self._save(self.decisions)
        return deleted

    def _save(self, decisions: dict[str, Decision]) -> None:
        """Write cleaned.csv and the decisions file for `decisions`, then make them current."""
        # memory changes last, so that a failed write leaves page, files and memory as they were
        labels = self.current_labels(decisions)
        write_labels_csv(self.data_dir / LABELS_FILE, labels)
        saved = {
            "format": DECISIONS_FORMAT,
            "decisions": {
                fname: {"action": d.action, **({"label": d.label} if d.label else {})}
                for fname, d in sorted(decisions.items())
            },
            "start_labels": dict(sorted(self.start_labels.items())),
        }
        write_atomically(self.data_dir / DECISIONS_FILE, json.dumps(saved, indent=1) + "\n")
        self.decisions = decisions
