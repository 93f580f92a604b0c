"""POST /why: "Why? Show where the model looked" on the page without JavaScript.

The plain form sends the id of the result kept on the server (webapp/result_store.py); the heat map
is laid over that photo and the result shown again. The page's script asks the API instead
(`/api/predict?explain=1`), sending the photo again.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for

from classifier.errors import ExplainError, NoModelError

from .errors import StoreUnavailableError
from .result_store import GONE, recall, show_next
from .results import heat_map_url, open_photo

bp = Blueprint("explain", __name__)


@bp.post("/why")
def why():
    """Lay the heat map over the kept photo and show the result again."""
    try:
        result = recall(request.form.get("result"))
    except StoreUnavailableError as error:
        flash(str(error), "warning")
        return redirect(url_for("classify.index"))
    if result is None:
        flash(GONE, "warning")
        return redirect(url_for("classify.index"))
    try:
        result.heatmap = heat_map_url(open_photo(result), result.label)
    except (ExplainError, NoModelError) as error:
        flash(str(error), "warning")
    show_next(result)
    return redirect(url_for("classify.index", _anchor=f"why-{result.id}"))
