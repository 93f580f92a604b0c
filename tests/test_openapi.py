"""The JSON API keeps the promises of its OpenAPI document: schemathesis finds nothing."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from webapp.openapi import IMAGE_MEDIA_TYPES, SPEC

from .hostile import picture
from .imagemaker import CLASSES, encode

PILLOW_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}


@st.composite
def pictures_in(draw, format: str) -> bytes:
    """A real picture of either class, of any small size, in `format`.

    A schema can only say "binary"; that the bytes must be a decodable picture it cannot say, so
    schemathesis is told how to make such bytes for the positive tests.
    """
    label = draw(st.sampled_from(CLASSES))
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    image = picture(label, size, seed=draw(st.integers(0, 2**16)))
    return encode(image if format != "GIF" else image.convert("P"), format)


for media_type in IMAGE_MEDIA_TYPES:
    schemathesis.openapi.media_type(media_type, pictures_in(PILLOW_FORMATS[media_type]))


# loaded from the module (schemathesis' lazy fixture loader does not work with pytest 9); the
# next test checks that the app serves exactly this document
schema = schemathesis.openapi.from_dict(SPEC)


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_documented_promises(case, shared_app):
    case.call_and_validate(app=shared_app)


def test_the_app_serves_this_document(client):
    assert client.get("/openapi.json").get_json() == SPEC


def test_the_document_describes_both_ways_to_send_an_image(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    body = document["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body
    responses = document["paths"]["/api/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "501", "503"} <= set(responses)
    flags = {
        parameter["name"] for parameter in document["paths"]["/api/predict"]["post"]["parameters"]
    }
    assert flags == {"thumbnail", "explain"}


def test_the_document_describes_several_photos_and_their_answers(client):
    document = client.get("/openapi.json").get_json()
    several = document["paths"]["/api/predict/several"]["post"]
    schema = several["requestBody"]["content"]["multipart/form-data"]["schema"]
    files = schema["properties"]["files"]
    assert schema["required"] == ["files"] and files["type"] == "array"
    assert files["items"]["format"] == "binary" and files["maxItems"] == 10
    flags = {parameter["name"] for parameter in several["parameters"]}
    assert flags == {"thumbnail", "explain"}
    answer = several["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Results"}
    schemas = document["components"]["schemas"]
    assert "sure" in schemas["Prediction"]["required"]
    assert schemas["PhotoError"]["required"] == ["error", "status"]


def test_the_document_gives_this_servers_limit_on_photos(make_app):
    document = make_app(MAX_FILES=3).test_client().get("/openapi.json").get_json()
    several = document["paths"]["/api/predict/several"]["post"]
    schema = several["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["files"]["maxItems"] == 3
