"""The OpenAPI 3 description of the JSON API, served at /openapi.json (written by hand)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from classifier.decode import ACCEPTED_NAMES

bp = Blueprint("openapi", __name__)

# the Content-Types a raw body may carry; any image/* is read, these are the formats decoded
IMAGE_MEDIA_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/tiff",
)
BINARY = {"type": "string", "format": "binary"}
DATA_URL = {"type": "string", "pattern": "^data:image/jpeg;base64,"}


def _error(description: str) -> dict:
    """A documented error response: JSON with one sentence."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _flag(name: str, description: str) -> dict:
    """An optional query flag: 1, true, yes or on turn it on; anything else leaves it off."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{description} On with 1, true, yes or on.",
        "schema": {"type": "string"},
        "example": "1",
    }


SPEC: dict = {
    "openapi": "3.0.3",
    "info": {
        "title": "brighton-seafront",
        "version": "1",
        "description": (
            "Classify a photo with the served fastai model. Send the image as "
            "multipart field `file`, or as the raw body with an image/* "
            f"Content-Type. Accepted formats: {ACCEPTED_NAMES}. Every error is "
            "JSON with one sentence that says what to do."
        ),
    },
    "paths": {
        "/api/predict": {
            "post": {
                "operationId": "predict",
                "summary": "Classify one image",
                "parameters": [
                    _flag("thumbnail", "Add `thumbnail`: the photo, small, as a JPEG data: URL."),
                    _flag(
                        "explain",
                        "Add `heatmap`: where the model looked for "
                        "the label (Grad-CAM over the photo), as a "
                        "JPEG data: URL.",
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {"file": {**BINARY, "description": "The photo."}},
                            },
                            "encoding": {"file": {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}},
                        },
                        **{media_type: {"schema": BINARY} for media_type in IMAGE_MEDIA_TYPES},
                    },
                },
                "responses": {
                    "200": {
                        "description": "The model's answer.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Prediction"}
                            }
                        },
                    },
                    "400": _error("No image was sent, or it is empty, damaged or not an image."),
                    "413": _error("The upload or the image's dimensions exceed the limits."),
                    "415": _error("An image in a format that is not accepted."),
                    "501": _error("`explain` was asked of a model without a convolutional layer."),
                    "503": _error("No model is installed yet."),
                    "429": _error("Too many photos from this address (SEAFRONT_RATE_LIMIT)."),
                },
            },
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness and what is loaded",
                "responses": {
                    "200": {
                        "description": "The server is up.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                        },
                    }
                },
            },
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: a warm model, and not draining",
                "responses": {
                    "200": {
                        "description": "Send this server requests.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}
                        },
                    },
                    "503": {
                        "description": "Do not: no model is loaded, or it is shutting down.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}
                        },
                    },
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            },
        },
    },
    "components": {
        "schemas": {
            "Ready": {
                "type": "object",
                "required": ["ready"],
                "properties": {"ready": {"type": "boolean"}, "reason": {"type": "string"}},
            },
            "Prediction": {
                "type": "object",
                "required": ["label", "confidence", "probabilities", "device"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string", "description": "The most probable class."},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "probabilities": {
                        "type": "object",
                        "description": "Every class of the model and its probability.",
                        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "device": {"type": "string", "example": "cpu"},
                    "thumbnail": DATA_URL,
                    "heatmap": DATA_URL,
                },
            },
            "Health": {
                "type": "object",
                "required": ["status", "model_loaded", "device", "classes"],
                "additionalProperties": False,
                "properties": {
                    "status": {"type": "string", "enum": ["ok"]},
                    "model_loaded": {"type": "boolean"},
                    "device": {"type": "string"},
                    "classes": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "additionalProperties": False,
                "properties": {
                    "error": {
                        "type": "string",
                        "minLength": 1,
                        "description": "What happened and what to do.",
                    }
                },
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document of the JSON API."""
    return jsonify(SPEC)
