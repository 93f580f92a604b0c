"""Metrics, readiness and request ids, in one process (tests/test_fleet.py checks that the
metrics add up across gunicorn's workers and replicas, and the drain on SIGTERM)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from classifier.observer import ServiceObserver
from webapp import drain


def samples(client) -> dict[tuple[str, tuple], float]:
    """The app's /metrics as {(sample name, sorted labels): value}."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def predict(client, png: bytes):
    """POST /api/predict."""
    return client.post("/api/predict", data={"file": (io.BytesIO(png), "p.png")})


@pytest.mark.parametrize(
    ("send", "route", "status"),
    [
        (lambda c, png: predict(c, png), "/api/predict", "200"),
        (lambda c, png: c.post("/api/predict"), "/api/predict", "400"),
        (lambda c, png: c.get("/healthz"), "/healthz", "200"),
        (lambda c, png: c.get("/no/such/page?secret=1"), "unmatched", "404"),
    ],
)
def test_requests_are_counted_by_route_pattern_and_status(
    client, png_pictures, send, route, status
):
    before = samples(client)
    send(client, png_pictures["mod0"])
    after = samples(client)
    name = "seafront_requests_total"
    assert (
        value(after, name, route=route, status=status)
        - value(before, name, route=route, status=status)
        == 1
    )
    assert value(after, "seafront_request_seconds_count", route=route) > value(
        before, "seafront_request_seconds_count", route=route
    )


def test_a_prediction_is_counted_in_one_batch_one_decode_and_the_model_is_named(
    client, png_pictures, model_path
):
    import hashlib

    before = samples(client)
    assert predict(client, png_pictures["rocker0"]).status_code == 200
    after = samples(client)
    for name in ("seafront_batch_size_sum", "seafront_batch_size_count"):
        assert value(after, name) - value(before, name) == 1
    for name in ("seafront_forward_seconds_count", "seafront_decode_seconds_count"):
        assert value(after, name) - value(before, name) == 1
    served = hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert value(after, "seafront_model_info", sha256=served) >= 1
    assert value(after, "seafront_model_loads_total", kind="start", outcome="ok") >= 1
    assert value(after, "seafront_queue_depth") == 0  # nothing waiting once answered


def test_the_metrics_name_no_upload_and_no_path_a_client_typed(client, png_pictures):
    predict(client, png_pictures["mod1"])
    client.get("/a-path-nobody-should-see")
    text = client.get("/metrics").get_data(as_text=True)
    assert "a-path-nobody-should-see" not in text and "p.png" not in text


@pytest.mark.parametrize(
    ("config", "status"), [({"METRICS": False}, 404), ({"METRICS_PORT": 9999}, 404), ({}, 200)]
)
def test_metrics_can_be_turned_off_or_moved_to_their_own_port(make_app, config, status):
    assert make_app(**config).test_client().get("/metrics").status_code == status


def test_with_metrics_off_the_model_layer_reports_to_no_one(make_app):
    service = make_app(METRICS=False).extensions["seafront.model"]
    assert type(service.observer) is ServiceObserver


def test_readyz_is_true_with_a_warm_model_and_false_while_draining(client):
    assert client.get("/readyz").get_json() == {"ready": True}
    drain.DRAINING.set()
    try:
        answer = client.get("/readyz")
    finally:
        drain.DRAINING.clear()
    assert answer.status_code == 503 and "draining" in answer.get_json()["reason"]
    assert client.get("/healthz").status_code == 200  # liveness stays true meanwhile


def test_readyz_is_false_without_a_model(tmp_path):
    from webapp import create_app

    app = create_app(
        {
            "TESTING": True,
            "MODEL_PATH": str(tmp_path / "missing.pkl"),
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["reason"] == "no model is loaded"


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("abc-123.def:9", "abc-123.def:9"),  # passed through, as nginx sends its $request_id
        ("two words", None),  # anything else could forge a log line: a new id instead
        ("x" * 129, None),
        (None, None),
    ],
)
def test_each_answer_carries_a_request_id_passed_through_or_generated(client, sent, echoed):
    headers = {"X-Request-ID": sent} if sent is not None else {}
    answer = client.get("/healthz", headers=headers)
    if echoed:
        assert answer.headers["X-Request-ID"] == echoed
    else:
        assert len(answer.headers["X-Request-ID"]) == 32 and answer.headers["X-Request-ID"] != sent


def test_the_json_access_log_is_one_line_per_request_with_its_id(make_app, png_pictures):
    app = make_app(ACCESS_LOG="json")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    access = logging.getLogger("seafront.access")
    access.addHandler(handler)
    try:
        app.test_client().post(
            "/api/predict",
            data={"file": (io.BytesIO(png_pictures["mod0"]), "p.png")},
            headers={"X-Request-ID": "req-42"},
        )
    finally:
        access.removeHandler(handler)
    [line] = lines
    entry = json.loads(line)
    assert entry["request_id"] == "req-42" and entry["route"] == "/api/predict"
    assert entry["status"] == 200 and entry["method"] == "POST" and entry["seconds"] >= 0


def test_application_py_gives_the_workers_a_fresh_metrics_folder_and_removes_it(
    monkeypatch, model_path, tmp_path
):
    import os
    from pathlib import Path

    from webapp import cli, server

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    for setting in cli.FLAGGED:
        monkeypatch.setenv(setting.env, str(setting.default))  # main() writes the flags here
    seen = {}

    def serve(load_app, options):
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        seen.update(
            options=options, folder=folder, empty=folder.is_dir() and not any(folder.iterdir())
        )

    monkeypatch.setattr(server, "serve", serve)
    cli.main(["--port", "0", "--model", str(model_path)])
    assert seen["empty"] and not seen["folder"].exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert seen["options"]["graceful_timeout"] == 30  # the drain (0) and SEAFRONT_GRACEFUL_TIMEOUT


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"accesslog": "-", "graceful_timeout": 30, "drain_seconds": 0.0}),
        (
            {"SEAFRONT_ACCESS_LOG": "json", "SEAFRONT_DRAIN_SECONDS": "2.5"},
            {"accesslog": None, "graceful_timeout": 33, "drain_seconds": 2.5},
        ),
        ({"SEAFRONT_ACCESS_LOG": "off"}, {"accesslog": None}),
    ],
)
def test_gunicorns_options_come_from_the_fleet_settings(monkeypatch, env, expected):
    from webapp import cli

    for key in ("SEAFRONT_ACCESS_LOG", "SEAFRONT_DRAIN_SECONDS", "SEAFRONT_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = cli.fleet_options()
    assert {key: options[key] for key in expected} == expected
    assert "when_ready" not in options  # metrics at /metrics unless SEAFRONT_METRICS_PORT
