"""What the page shows for a classified photo: thumbnail, bars, heat map (inline data: URLs)."""

from __future__ import annotations

import base64
import io
import secrets
import time
from dataclasses import dataclass, field

from flask import current_app
from PIL import Image

from classifier.predictor import Prediction

from .service import get_service
from .wording import is_sure, result_sentence, unsure_sentence

THUMBNAIL_SIDE = 480  # sharp enough for a phone screen's width, ~40 kB as a JPEG
PHOTO_SIDE = 1024  # the copy kept in memory for "why?" and feedback, and saved as feedback
TOP_BARS = 5  # with more classes than this, the page shows the top five
YOUR_PHOTO = "Your photo"
NOT_SURE = "Not sure"


@dataclass(frozen=True)
class Bar:
    """One class's confidence bar."""

    label: str
    probability: float

    @property
    def percent(self) -> str:
        """The probability as the page prints it, e.g. 97.0%."""
        return f"{self.probability:.1%}"


@dataclass
class Result:
    """A classified photo as the page shows it; `photo` (JPEG bytes) stays on the server."""

    label: str
    confidence: float
    bars: list[Bar]
    class_count: int
    thumbnail: str = ""
    photo: bytes = b""
    heatmap: str = ""
    feedback: str = ""
    sure: bool = True  # False: no class reaches MIN_CONFIDENCE, and the page names none
    sentence: str = ""  # what the page says about it: the class, "not sure", or the error
    caption: str = YOUR_PHOTO  # "Photo 2 of 3" when several were sent at once
    error: str = ""  # this photo could not be classified: why (the sentence)
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    created: float = field(default_factory=time.monotonic)

    @property
    def hidden_count(self) -> int:
        """How many classes have no bar (beyond the top five)."""
        return self.class_count - len(self.bars)

    @property
    def shown_label(self) -> str:
        """The large type of the card: the class, or "Not sure"."""
        return self.label if self.sure else NOT_SURE

    @property
    def flashed(self) -> str:
        """The sentence flashed with it, said alone when another worker shows the page."""
        return self.sentence if self.caption == YOUR_PHOTO else f"{self.caption}: {self.sentence}"


def top_bars(probabilities: dict[str, float], top: int = TOP_BARS) -> list[Bar]:
    """Bars for the `top` most probable classes, most probable first (ties in class order)."""
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    return [Bar(label, probability) for label, probability in ranked[:top]]


def shrunk(image: Image.Image, side: int) -> Image.Image:
    """A copy of `image` no larger than `side` on its longer side (never enlarged)."""
    copy = image.convert("RGB")
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    return copy


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    """`image` as JPEG bytes, without any metadata (no EXIF, no location)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def data_url(image: Image.Image) -> str:
    """`image` as an inline JPEG data: URL: shown to the user, never written to disk."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image)).decode("ascii")


def photo_to_keep(data: bytes, image: Image.Image | None = None) -> Image.Image:
    """The uploaded photo at up to PHOTO_SIDE, for "why?" and feedback.

    `image`, decoded for the model, is reused when it is large enough; otherwise the upload is
    decoded again, since a JPEG decoded at reduced scale for the model may be far smaller.
    """
    if image is not None and max(image.size) >= PHOTO_SIDE:
        return shrunk(image, PHOTO_SIDE)
    return shrunk(get_service().decode(data, at_least=PHOTO_SIDE), PHOTO_SIDE)


def make_result(
    prediction: Prediction, image: Image.Image, data: bytes, caption: str = YOUR_PHOTO
) -> Result:
    """The page's view of a prediction for the upload `data`, decoded as `image`."""
    sure = is_sure(prediction.confidence)
    return Result(
        label=prediction.label,
        confidence=prediction.confidence,
        bars=top_bars(prediction.probabilities),
        class_count=len(prediction.probabilities),
        thumbnail=data_url(shrunk(image, THUMBNAIL_SIDE)),
        photo=jpeg_bytes(photo_to_keep(data, image), quality=90),
        sure=sure,
        sentence=(
            result_sentence(prediction.label, prediction.confidence)
            if sure
            else unsure_sentence(float(current_app.config["MIN_CONFIDENCE"]))
        ),
        caption=caption,
    )


def error_result(sentence: str, caption: str) -> Result:
    """The page's card for a photo of several that could not be classified."""
    return Result(
        label="",
        confidence=0.0,
        bars=[],
        class_count=0,
        sentence=sentence,
        caption=caption,
        error=sentence,
    )


def blank_result(classes: list[str]) -> Result:
    """A result with empty slots, rendered into the page's <template> for the script to fill."""
    bars = [Bar("", 0.0) for _ in classes[:TOP_BARS]]
    return Result(label="", confidence=0.0, bars=bars, class_count=len(classes), id="")


def heat_map_url(image: Image.Image, label: str) -> str:
    """Where the model looked for `label` in `image`, laid over its thumbnail, as a data: URL."""
    explanation = get_service().explain_image(image, label)
    return data_url(explanation.overlay(shrunk(image, THUMBNAIL_SIDE)))


def open_photo(result: Result) -> Image.Image:
    """The photo a result keeps in memory, decoded."""
    return Image.open(io.BytesIO(result.photo)).convert("RGB")
