"""Everything the model layer raises on purpose, in one place; each message is a sentence for the
user or the operator. The web layer maps these classes to HTTP statuses (webapp/errors.py)."""

from __future__ import annotations


class StartupError(Exception):
    """A start-up problem the user can fix; its message says what happened and what to do."""


class DeviceError(StartupError):
    """The requested device cannot be used."""


class PrecisionError(StartupError):
    """The requested precision is unknown or this device cannot run it."""


class BackendError(StartupError):
    """The requested inference backend is unknown, not installed, or cannot run here."""


class ModelLoadError(StartupError):
    """The model file exists but is not a loadable fastai 2.8 export."""


class ImageError(ValueError):
    """An upload that cannot be classified."""


class EmptyImageError(ImageError):
    """No bytes were sent."""


class UnreadableImageError(ImageError):
    """The bytes are not an image Pillow can read, or the image is corrupt or truncated."""


class UnsupportedImageError(ImageError):
    """The bytes are an image, but in a format we do not accept."""


class ImageTooLargeError(ImageError):
    """The image's dimensions exceed the pixel limit (a decompression bomb, or just too big)."""


class ImageTooComplexError(ImageError):
    """The image would cost far more to decode than its size suggests (a JPEG of many scans)."""


class DecoderBusyError(RuntimeError):
    """Every decoding slot stayed busy for the whole wait; the message says to try again."""


class NoModelError(RuntimeError):
    """No model is loaded; the message says how to get one."""


class ExplainError(RuntimeError):
    """The model cannot be explained this way (it has no convolutional layer)."""


class DeadlineExceededError(TimeoutError):
    """A job waited for the model past its deadline; it was dropped, not run."""
