"""The upload form (Flask-WTF: CSRF token included)."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SubmitField


class UploadForm(FlaskForm):
    """One photo to classify."""

    file = FileField("Photo", validators=[FileRequired("Choose a photo to upload.")],
                     render_kw={"accept": "image/*"})
    submit = SubmitField("Classify")
