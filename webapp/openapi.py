"""The OpenAPI 3 description of the JSON API, served at /openapi.json (written by hand)."""

from __future__ import annotations

import copy

from flask import Blueprint, current_app, jsonify

from classifier.decode import ACCEPTED_NAMES

from .settings import default

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


FLAGS = [
    _flag("thumbnail", "Add `thumbnail`: the photo, small, as a JPEG data: URL."),
    _flag(
        "explain",
        "Add `heatmap`: where the model looked for the label (Grad-CAM over the photo), as a "
        "JPEG data: URL.",
    ),
]
# what the model, rather than the upload, can answer
MODEL_ERRORS = {
    "501": _error(
        "`explain` was asked of a model that cannot show where it looked (no convolutional "
        "layer, or its last feature map is under 4x4)."
    ),
    "503": _error("No model is installed yet."),
    "504": _error("The model did not answer within SEAFRONT_REQUEST_TIMEOUT."),
    "429": _error("Too many photos from this address (SEAFRONT_RATE_LIMIT)."),
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
            "JSON with one sentence that says what to do. Several photos at once: "
            "POST /api/predict/several, one multipart `files` part per photo."
        ),
    },
    "paths": {
        "/api/predict": {
            "post": {
                "operationId": "predict",
                "summary": "Classify one image",
                "parameters": FLAGS,
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
                    **MODEL_ERRORS,
                },
            },
        },
        "/api/predict/several": {
            "post": {
                "operationId": "predictSeveral",
                "summary": "Classify several images at once",
                "description": "The images share the model's forward passes. Each one gets "
                "its own entry in `results`, in the order sent: the answer, or that image's "
                "own error (a damaged one fails alone).",
                "parameters": FLAGS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["files"],
                                "properties": {
                                    "files": {
                                        "type": "array",
                                        "items": BINARY,
                                        "minItems": 1,
                                        "maxItems": default("MAX_FILES"),
                                        "description": "The photos, one `files` part each: at "
                                        "most SEAFRONT_MAX_FILES, all within "
                                        "SEAFRONT_MAX_CONTENT_LENGTH.",
                                    }
                                },
                            },
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "One entry per image, in the order sent.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Results"}}
                        },
                    },
                    "400": _error(
                        "No `files` part was sent, or more than SEAFRONT_MAX_FILES of them."
                    ),
                    "413": _error("The upload is larger than SEAFRONT_MAX_CONTENT_LENGTH."),
                    **MODEL_ERRORS,
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
                "required": ["label", "confidence", "probabilities", "sure", "device"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string", "description": "The most probable class."},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "sure": {
                        "type": "boolean",
                        "description": "False when `confidence` is below SEAFRONT_MIN_CONFIDENCE: "
                        "the page then says the model is not sure instead of naming `label`. "
                        "Always true when that setting is 0 (the default).",
                    },
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
            "Results": {
                "type": "object",
                "required": ["results"],
                "additionalProperties": False,
                "properties": {
                    "results": {
                        "type": "array",
                        "description": "One entry per `files` part, in the order sent.",
                        "items": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Prediction"},
                                {"$ref": "#/components/schemas/PhotoError"},
                            ]
                        },
                    }
                },
            },
            "PhotoError": {
                "type": "object",
                "required": ["error", "status"],
                "additionalProperties": False,
                "properties": {
                    "error": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Why this photo could not be classified.",
                    },
                    "status": {
                        "type": "integer",
                        "enum": [400, 413, 415],
                        "description": "The status this photo alone would have got.",
                    },
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


def files_field(spec: dict) -> dict:
    """The schema of the multipart `files` field in `spec`."""
    several = spec["paths"]["/api/predict/several"]["post"]
    form = several["requestBody"]["content"]["multipart/form-data"]
    return form["schema"]["properties"]["files"]


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document of the JSON API, with this server's limit on photos per request."""
    limit = int(current_app.config["MAX_FILES"])
    if limit == files_field(SPEC)["maxItems"]:
        return jsonify(SPEC)
    spec = copy.deepcopy(SPEC)
    files_field(spec)["maxItems"] = limit
    return jsonify(spec)
