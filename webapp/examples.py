"""Examples to click: the photos saved beside the model (formats/examples.py), shown on the page.

An example is named by its class and file name; only a file that `list_examples` lists under
that pair is ever served or classified, never a path made from the request. Without saved
examples the page has no examples section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, redirect, request, send_file, url_for

from formats.examples import list_examples

from .errors import RequestError
from .service import get_service

bp = Blueprint("examples", __name__)


@dataclass(frozen=True)
class Example:
    """One example photo as the page offers it."""

    label: str
    name: str
    number: int  # 1, 2, ... within its class, for its text alternative

    @property
    def value(self) -> str:
        """What the plain form posts to classify it: `class/file name`."""
        return f"{self.label}/{self.name}"


def page_examples() -> list[tuple[str, list[Example]]]:
    """The examples beside the served model, by class, in name order; [] when there are none."""
    return [
        (label, [Example(label, path.name, n) for n, path in enumerate(paths, start=1)])
        for label, paths in list_examples(get_service().path).items()
    ]


def example_file(label: str, name: str) -> Path | None:
    """The listed example `name` of class `label`, or None: the path comes from the listing."""
    for path in list_examples(get_service().path).get(label, []):
        if path.name == name:
            return path
    return None


@bp.get("/examples/<label>/<name>")
def photo(label: str, name: str):
    """An example photo (a small JPEG written by `train.py`); 404 for anything not listed."""
    path = example_file(label, name)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/jpeg", max_age=300)


@bp.post("/examples")
def classify():
    """Classify the example the plain form names, as if it had been uploaded."""
    from .classify import classify_for_page, show  # the page's own path; imported late: cycle

    label, _, name = request.form.get("example", "").partition("/")
    path = example_file(label, name)
    if path is None:
        raise RequestError(
            "That example is no longer beside the model (it was retrained, perhaps): reload "
            "the page and pick another."
        )
    show(classify_for_page([path.read_bytes()]))
    return redirect(url_for("classify.index"))
