"""/favicon.ico: the site's icon (static/favicon.ico), where browsers look for it by default.

Every page links it too (templates/base.html); without it each page load logged a 404 in the
browser's console.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("favicon", __name__)


@bp.get("/favicon.ico")
def favicon():
    """The icon, cached for a day."""
    folder = Path(current_app.static_folder or "static")
    return send_from_directory(folder, "favicon.ico", mimetype="image/x-icon", max_age=86400)
