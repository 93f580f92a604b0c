"""The sentences the pages say, and how the model layer's sentences are shown on a page.

The model layer writes commands in Markdown backticks (they read well in a log and in JSON);
on a page they become <code>. The page's script (static/app.js) says the same sentences.
"""

from __future__ import annotations

import re

from flask import Flask, current_app, get_flashed_messages
from markupsafe import Markup, escape

BACKTICKED = re.compile(r"`([^`]+)`")


def with_code(text: str) -> Markup:
    """`text` escaped for HTML, with each `backticked` span shown as <code>."""
    return Markup(BACKTICKED.sub(r"<code>\1</code>", str(escape(text))))


def question(classes: list[str]) -> str:
    """The page's heading and title: "Is it mod or rocker?" for two or three classes."""
    if 2 <= len(classes) <= 3:
        return f"Is it {' or '.join(classes)}?"
    return "Please upload your file"


def result_sentence(label: str, confidence: float) -> str:
    """The seed app's sentence, with the confidence in percent."""
    return f"That picture belongs to {label} ({confidence:.1%} confident)"


def unsure_sentence(min_confidence: float) -> str:
    """What the page says instead of a class when no class is likely enough."""
    return (
        f"The model is not sure what this is: no class reaches the {min_confidence:.0%} "
        "it needs to name one."
    )


def is_sure(confidence: float) -> bool:
    """True when the likeliest class is likely enough to name (MIN_CONFIDENCE; 0 is off)."""
    return confidence >= float(current_app.config["MIN_CONFIDENCE"])


def _question() -> str:
    """The question for the loaded model's classes (none before the service is wired)."""
    service = current_app.extensions.get("seafront.model")
    return question(service.classes if service else [])


def _flashed() -> list[tuple[str, Markup]]:
    """This request's flashed messages, (category, message), with their code spans shown."""
    messages: list[tuple[str, str]] = get_flashed_messages(with_categories=True)  # type: ignore[assignment]
    return [(category, with_code(text)) for category, text in messages]


def init_app(app: Flask) -> None:
    """Give the templates these sentences and the `with_code` filter."""
    app.add_template_filter(with_code)
    app.add_template_global(_question, "question")
    app.add_template_global(_flashed, "flashed")
    app.add_template_global(result_sentence)
