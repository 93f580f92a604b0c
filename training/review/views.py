"""The review page's routes: the cards, an image, a decision, and applying the deletions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms import BooleanField, HiddenField, SelectMultipleField, StringField
from wtforms.validators import AnyOf, DataRequired, InputRequired

from formats.labels import TopLoss

from .state import ACTIONS, ReviewState, resolve_inside

SPLITS = ("train", "valid")
EXTENSION = "seafront.review"
bp = Blueprint("review", __name__)


@dataclass
class Review:
    """What the page shows: the top losses of the last fit and the review state of DIR."""

    state: ReviewState
    top_losses: list[TopLoss]
    classes: list[str]


class DecisionForm(FlaskForm):
    """One card's form: the button pressed (`action`) on `file`, and the new label."""

    file = HiddenField(validators=[InputRequired()])
    action = StringField(validators=[AnyOf((*ACTIONS, "undo"))])
    label = StringField()


class ApplyDeletionsForm(FlaskForm):
    """The confirmation step before files are deleted from disk."""

    files = SelectMultipleField(validators=[DataRequired("Tick at least one file to delete.")])
    confirm = BooleanField(validators=[DataRequired("Tick the box to confirm the deletion.")])


def _review() -> Review:
    return current_app.extensions[EXTENSION]


def _filters() -> dict[str, Any]:
    """The class, split and page of the query string, checked; 400 for unknown values."""
    label, split = request.args.get("label", ""), request.args.get("split", "")
    if label and label not in _review().classes:
        abort(400, f"Unknown class {label!r}: choose one of {', '.join(_review().classes)}.")
    if split and split not in SPLITS:
        abort(400, f"Unknown split {split!r}: choose train or valid.")
    page = max(request.args.get("page", 1, type=int), 1)
    # None, not "", so that url_for leaves an unset filter out of the links it builds
    return {"label": label or None, "split": split or None, "page": page if page > 1 else None}


def _checked_path(fname: str) -> Path:
    """The path of `fname` if it names an image of DIR; 400 otherwise."""
    state = _review().state
    try:
        path = resolve_inside(state.data_dir, fname)
    except ValueError as error:
        abort(400, f"{error}: the review page only shows and changes images of its data folder.")
    if fname not in state.start_labels:
        abort(400, f"{fname} is not an image of the data set: reload the page.")
    return path


@bp.app_context_processor
def data_dir_in_templates() -> dict[str, Any]:
    """Every page names the data folder under review."""
    return {"data_dir": _review().state.data_dir}


@bp.get("/")
def index() -> str:
    """The top losses, filtered by class and split, one card per image."""
    review, filters = _review(), _filters()
    cards = [
        (position, row)
        for position, row in enumerate(review.top_losses)
        if row.file in review.state.start_labels  # rows of files deleted since are gone
        and (not filters["label"] or row.actual == filters["label"])
        and (not filters["split"] or row.split == filters["split"])
    ]
    size = current_app.config["REVIEW_PAGE_SIZE"]
    first = ((filters["page"] or 1) - 1) * size
    return render_template(
        "index.html",
        review=review,
        filters=filters,
        cards=cards[first : first + size],
        pages=max(-(-len(cards) // size), 1),
        matching=len(cards),
        splits=SPLITS,
        labels=review.state.current_labels(),
        marked=review.state.marked_for_deletion(),
    )


@bp.get("/image")
def image() -> Response:
    """The image file `?file=` of DIR, and nothing outside it."""
    fname = request.args.get("file", "")
    path = _checked_path(fname)
    try:
        return send_file(path)
    except (FileNotFoundError, IsADirectoryError):  # deleted or moved since the page was built
        abort(404, f"{fname} is no longer in {_review().state.data_dir}: reload the page.")


@bp.post("/decide")
def decide() -> Response:
    """Keep, relabel, delete or undo one image, then go back to where the reviewer was."""
    form = DecisionForm()
    if not form.validate():
        abort(400, f"The decision was not understood ({form.errors}): reload the page.")
    review, fname = _review(), form.file.data
    _checked_path(fname)
    if form.action.data == "undo":
        review.state.undo(fname)
    elif form.action.data == "relabel" and form.label.data not in review.classes:
        abort(400, f"Unknown class {form.label.data!r}: choose one from the list.")
    else:
        review.state.decide(fname, form.action.data, form.label.data)
    position = next((i for i, row in enumerate(review.top_losses) if row.file == fname), 0)
    return redirect(url_for("review.index", **_filters(), _anchor=f"card-{position}"))


@bp.route("/deletions", methods=["GET", "POST"])
def deletions() -> Response | tuple[str, int] | str:
    """Show the files marked for deletion and delete the ticked ones once confirmed."""
    state = _review().state
    form = ApplyDeletionsForm()
    form.files.choices = state.marked_for_deletion()
    if request.method == "GET":
        form.files.data = form.files.choices  # all ticked to start with
        return render_template("deletions.html", form=form)
    if not form.validate():
        return render_template("deletions.html", form=form), 400
    try:
        deleted = state.apply_deletions(form.files.data)
    except ValueError as error:  # a decisions file edited to name a path outside DIR
        abort(400, f"Nothing was deleted: {error}. Undo that decision and try again.")
    except OSError as error:  # a folder where the file was, a read-only disk
        abort(409, f"Could not delete a file ({error}); those listed before it were deleted.")
    flash(f"Deleted {len(deleted)} file(s) from {state.data_dir}.", "success")
    return redirect(url_for("review.index"))


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int]:
    """An error page that says what went wrong and what to do, with the error's status."""
    message = error.description
    if isinstance(error, CSRFError):
        message = f"{error.description} Reload the page and try again."
    return render_template("error.html", message=message, title=error.name), error.code or 500
