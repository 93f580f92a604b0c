"""The upload form (Flask-WTF: CSRF token included)."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, MultipleFileField
from werkzeug.datastructures import FileStorage
from wtforms import SubmitField


class UploadForm(FlaskForm):
    """One photo, or several, to classify."""

    file = MultipleFileField(
        "Photo",
        validators=[FileRequired("Choose a photo to upload.")],
        render_kw={"accept": "image/*"},
    )
    # on a phone, `capture` opens the camera; the photo arrives in this field instead of `file`
    camera = FileField("Take a photo", render_kw={"accept": "image/*", "capture": "environment"})
    submit = SubmitField("Classify")

    def validate(self, extra_validators=None) -> bool:
        """Validate, taking a photo from the camera field as the photo."""
        if not any(self.file.data or []) and self.camera.data:
            self.file.data = [self.camera.data]
        return super().validate(extra_validators)

    def photos(self) -> list[FileStorage]:
        """The photos sent, in the order chosen."""
        return list(self.file.data)
