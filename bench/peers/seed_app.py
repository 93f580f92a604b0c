#!/usr/bin/env python
"""The 2019 blog post's app (shared/seed), ported to fastai 2.8 as little as possible.

    python bench/peers/seed_app.py MODEL PORT UPLOAD_FOLDER

What changed: `from fastai.vision.all import ...` for fastai 2.8's names (`load_learner` of a
file, `PILImage.create` for `open_image`), `werkzeug.utils.secure_filename`, the model and port
from the command line, the secret key from `SECRET_KEY` or an instance folder in the upload
folder (the seed's was a literal in the code), and the page inline instead of
templates/upload.html with Flask-Bootstrap (styling only). What stayed: Flask's development
server, the form with its CSRF token, every upload saved as uploads/<its filename> (so clients
that send the same name share one file), `learn.predict` on that file, and the answer as a
flashed message after a redirect.
"""

# ruff: noqa: UP032 - the seed's own code, kept as it wrote it

import os
import secrets
import sys
from pathlib import Path

from fastai.vision.all import PILImage, load_learner
from flask import Flask, flash, redirect, render_template_string, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.utils import secure_filename
from wtforms import SubmitField

MODEL, PORT, UPLOADS = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PAGE = """<!doctype html><title>Upload</title>
{% for category, message in get_flashed_messages(with_categories=true) %}
<div class="alert alert-{{ category }}">{{ message }}</div>{% endfor %}
<h3>Please upload your file</h3>
<form method="post" enctype="multipart/form-data">{{ form.hidden_tag() }}{{ form.file() }}
{{ form.submit() }}</form>"""


def secret_key(instance: Path) -> str:
    """SECRET_KEY from the environment, else the one kept in `instance`, made there once."""
    # the seed wrote its key into the code; webapp.secret does this for the app, but a peer
    # imports nothing of ours, so these few lines are its own
    if key := os.environ.get("SECRET_KEY"):
        return key
    kept = instance / "secret_key"
    if not kept.exists():
        instance.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_hex(32))  # owner-only from the start
    return kept.read_text()


class Config:
    SECRET_KEY = secret_key(Path(UPLOADS).resolve() / "instance")


class UploadForm(FlaskForm):
    file = FileField()
    submit = SubmitField("Submit")


application = Flask(__name__)
application.config.from_object(Config)

learn = load_learner(MODEL)


@application.route("/upload", methods=["GET", "POST"])
def upload():
    form = UploadForm()

    if form.validate_on_submit():
        filename = secure_filename(form.file.data.filename)
        form.file.data.save("{}/{}".format(UPLOADS, filename))
        img = PILImage.create("{}/{}".format(UPLOADS, filename))
        pred_class, pred_idx, outputs = learn.predict(img)
        flash("That picture belongs to {}".format(pred_class), "success")
        return redirect(url_for("upload"))

    return render_template_string(PAGE, form=form)


if __name__ == "__main__":
    application.run(host="127.0.0.1", port=PORT)
