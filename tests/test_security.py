"""Security: headers on every response, CSRF, error pages, no debug mode, uploads never echoed."""

from __future__ import annotations

import io
import logging
import re
import secrets

import pytest

from classifier.errors import StartupError
from webapp import create_app
from webapp.cli import serves_local_only

from .hostile import SVG, gif_html_polyglot
from .support import read_csrf_token, status_with_host

SITE_LOOK = ("brighton-seafront", "/bootstrap/static/css/bootstrap.min.css", "/static/site.css")
LEAKS = ("Traceback", 'File "', "RuntimeError", "Werkzeug Debugger")


def upload(data: bytes, filename: str = "photo.png", content_type: str = "image/png") -> dict:
    """A multipart field `file`."""
    return {"file": (io.BytesIO(data), filename, content_type)}


# --- headers -----------------------------------------------------------------------------------

REQUESTS = {
    "page": lambda c: c.get("/"),
    "upload page": lambda c: c.get("/upload"),
    "healthz": lambda c: c.get("/healthz"),
    "site css": lambda c: c.get("/static/site.css"),
    "bootstrap css": lambda c: c.get("/bootstrap/static/css/bootstrap.min.css"),
    "api answer": lambda c: c.post("/api/predict", data=b"GIF89a", content_type="image/gif"),
    "api error": lambda c: c.post("/api/predict"),
    "csrf error": lambda c: c.post("/", data={}),
    "page 404": lambda c: c.get("/no/such/page"),
    "api 404": lambda c: c.get("/api/nothing"),
    "page 405": lambda c: c.put("/"),
}


@pytest.mark.parametrize("send", REQUESTS.values(), ids=REQUESTS.keys())
def test_every_response_carries_the_security_headers(client, send):
    headers = send(client).headers
    policy = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"


def test_a_forced_500_carries_the_security_headers_too(failing_app):
    answer = failing_app.test_client().get("/boom")
    assert answer.status_code == 500
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


# --- error pages -------------------------------------------------------------------------------


@pytest.fixture
def failing_app(make_app):
    """An app with a page and an API route that raise: a bug, as far as the user can tell."""
    app = make_app(MAX_CONTENT_LENGTH=2048)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/api/boom")
    def api_boom():
        raise RuntimeError("secret internals")

    return app


PAGE_ERRORS = {
    400: lambda c: c.post("/", data={"file": (io.BytesIO(b"x"), "x.png")}),  # no CSRF token
    404: lambda c: c.get("/no/such/page"),
    405: lambda c: c.delete("/"),
    413: lambda c: c.post("/", data=upload(bytes(4096))),
    500: lambda c: c.get("/boom"),
}
API_ERRORS = {
    400: lambda c: c.post("/api/predict"),
    404: lambda c: c.get("/api/nothing"),
    405: lambda c: c.get("/api/predict"),
    413: lambda c: c.post("/api/predict", data=bytes(4096), content_type="image/png"),
    500: lambda c: c.get("/api/boom"),
}


@pytest.mark.parametrize(("status", "send"), PAGE_ERRORS.items(), ids=map(str, PAGE_ERRORS))
def test_page_errors_are_pages_in_the_sites_look(failing_app, status, send):
    answer = send(failing_app.test_client())
    page = answer.get_data(as_text=True)
    assert answer.status_code == status
    assert answer.mimetype == "text/html"
    assert all(part in page for part in SITE_LOOK)
    sentence = re.search(r'<p id="error-sentence">([^<]+)</p>', page).group(1)
    assert re.fullmatch(r"[A-Z].{20,}[.!?]", sentence)
    assert not any(leak in page for leak in LEAKS) and "secret internals" not in page


@pytest.mark.parametrize(("status", "send"), API_ERRORS.items(), ids=map(str, API_ERRORS))
def test_api_errors_are_json_sentences(failing_app, status, send):
    answer = send(failing_app.test_client())
    assert answer.status_code == status and answer.is_json
    error = answer.get_json()["error"]
    assert re.fullmatch(r"[A-Z].{20,}[.!?]", error)
    assert not any(leak in error for leak in LEAKS) and "secret internals" not in error


@pytest.mark.parametrize("path", ["/", "/api/predict"])
def test_a_405_says_which_methods_are_allowed(client, path):
    answer = client.put(path)
    assert answer.status_code == 405
    assert "POST" in answer.headers["Allow"]


def test_the_413_sentence_names_the_limit(failing_app):
    answer = failing_app.test_client().post(
        "/api/predict", data=bytes(4096), content_type="image/png"
    )
    assert "limit of 2 kB" in answer.get_json()["error"]


def test_a_500_logs_the_traceback_for_the_operator(failing_app, caplog):
    with caplog.at_level(logging.ERROR, logger="webapp.errors"):
        failing_app.test_client().get("/boom")
    assert "Unhandled error on GET /boom" in caplog.text
    assert "RuntimeError: secret internals" in caplog.text


# --- CSRF --------------------------------------------------------------------------------------


def test_a_form_post_with_a_forged_token_is_refused(client, png_pictures):
    answer = client.post("/", data={"csrf_token": "forged", **upload(png_pictures["mod0"])})
    assert answer.status_code == 400
    assert "The form expired or was not sent from this site" in answer.get_data(as_text=True)


def test_a_token_from_another_session_is_refused(shared_app, png_pictures):
    someone_else = shared_app.test_client()
    token = read_csrf_token(someone_else.get("/").get_data(as_text=True))
    victim = shared_app.test_client()
    victim.get("/")
    answer = victim.post("/upload", data={"csrf_token": token, **upload(png_pictures["mod0"])})
    assert answer.status_code == 400
    assert "CSRF" in answer.get_data(as_text=True)


def test_a_token_signed_with_another_secret_is_refused(make_app, png_pictures):
    other = make_app(SECRET_KEY=secrets.token_hex(32)).test_client()
    token = read_csrf_token(other.get("/").get_data(as_text=True))
    client = make_app(SECRET_KEY=secrets.token_hex(32)).test_client()
    client.get("/")
    answer = client.post("/", data={"csrf_token": token, **upload(png_pictures["mod0"])})
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("referrer", "status", "words"),
    [
        (None, 400, "the referrer header is missing"),
        ("https://evil.example/", 400, "the referrer does not match the host"),
        ("https://localhost/", 302, ""),
    ],
)
def test_over_https_the_form_must_come_from_this_site(
    client, png_pictures, referrer, status, words
):
    token = read_csrf_token(client.get("/", base_url="https://localhost").get_data(as_text=True))
    headers = {"Referer": referrer} if referrer else {}
    answer = client.post(
        "/",
        base_url="https://localhost",
        headers=headers,
        data={"csrf_token": token, **upload(png_pictures["rocker0"])},
    )
    assert answer.status_code == status
    assert words in answer.get_data(as_text=True)


def test_the_session_cookie_is_http_only_and_same_site(client):
    cookie = client.get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# --- local only: DNS rebinding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_only", "host", "status"),
    [
        (True, "127.0.0.1:5000", 200),
        (True, "localhost:8022", 200),  # an ssh tunnel forwards another port
        (True, "[::1]:5000", 200),
        (True, "evil.example:5000", 400),
        (True, "127.0.0.1.evil.example", 400),
        ("auto", "evil.example", 200),  # plain gunicorn cannot know its address: off
        (False, "evil.example", 200),
    ],
)
def test_a_local_only_app_answers_to_loopback_names_only(make_app, local_only, host, status):
    answer = make_app(LOCAL_ONLY=local_only).test_client().get("/", headers={"Host": host})
    assert answer.status_code == status
    if status == 400:
        sentence = answer.get_data(as_text=True)
        assert "answers only to its own address" in sentence
        assert (
            "open http://127.0.0.1" + (":5000" if ":5000" in host else "") + "/ instead" in sentence
        )
        assert answer.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("origin", "status"),
    [("http://evil.example", 403), ("null", 403), ("http://localhost:5000", 200), (None, 200)],
)
def test_a_local_only_api_refuses_posts_from_other_sites(make_app, png_pictures, origin, status):
    client = make_app(LOCAL_ONLY=True).test_client()
    answer = client.post(
        "/api/predict",
        headers={"Origin": origin} if origin else {},
        data={"file": (io.BytesIO(png_pictures["mod0"]), "mod.png")},
    )
    assert answer.status_code == status
    if status == 403:
        assert "cannot change anything here" in answer.get_json()["error"]


@pytest.mark.parametrize(
    ("setting", "host", "proxies", "local_only"),
    [
        ("auto", "127.0.0.1", "0", True),
        ("auto", "127.0.0.2", "0", True),
        ("auto", "localhost", "0", True),
        ("auto", "::1", "0", True),
        ("auto", "0.0.0.0", "0", False),
        ("auto", "myhost.example", "0", False),
        ("auto", "127.0.0.1", "1", False),  # behind nginx, Host is the public name
        ("true", "0.0.0.0", "0", True),
        ("false", "127.0.0.1", "0", False),
    ],
)
def test_python_application_py_decides_auto_by_its_address(
    monkeypatch, setting, host, proxies, local_only
):
    monkeypatch.setenv("SEAFRONT_LOCAL_ONLY", setting)
    monkeypatch.setenv("SEAFRONT_TRUSTED_PROXIES", proxies)
    assert serves_local_only(host) is local_only


@pytest.mark.parametrize(("host", "status"), [("127.0.0.1", 200), ("evil.example", 400)])
def test_python_application_py_on_loopback_refuses_a_rebound_host(live_server, host, status):
    assert status_with_host(f"{live_server.url}/", host) == status


# --- debug mode and the development server -----------------------------------------------------


@pytest.mark.parametrize(("variable", "value"), [("FLASK_DEBUG", "1"), ("SEAFRONT_DEBUG", "true")])
def test_debug_from_the_environment_stops_start_up(monkeypatch, tmp_path, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(StartupError, match="Debug mode is on"):
        create_app({"INSTANCE_PATH": str(tmp_path), "MODEL_PATH": str(tmp_path / "none.pkl")})


def test_debug_in_the_config_stops_start_up(make_app):
    with pytest.raises(StartupError, match="This app has no debug mode"):
        make_app(DEBUG=True)


def test_debug_switched_on_later_refuses_requests(make_app, caplog):
    app = make_app()
    app.debug = True
    with caplog.at_level(logging.ERROR):
        answer = app.test_client().get("/")
    assert answer.status_code == 500
    assert "Debug mode is on" in caplog.text
    assert "This app has no debug mode" in answer.get_data(as_text=True)


def test_flasks_development_server_is_refused(make_app, caplog):
    app = make_app(TESTING=False)
    with pytest.raises(StartupError, match="python application.py"):
        app.run()
    with caplog.at_level(logging.ERROR):
        answer = app.test_client().get("/", environ_base={"SERVER_SOFTWARE": "Werkzeug/3.1"})
    assert answer.status_code == 500
    assert "development server is not for serving this app" in caplog.text
    # the user sees the reason too, not only the log
    assert "start it with <code>python application.py</code>" in answer.get_data(as_text=True)


# --- uploads are never served back -------------------------------------------------------------

HOSTILE_UPLOADS = [
    (gif_html_polyglot(), "page.html", "text/html"),
    (gif_html_polyglot(), "<script>alert(1)</script>.gif", "image/gif"),
    (SVG, "drawing.svg", "image/svg+xml"),
]


@pytest.mark.parametrize(("data", "filename", "content_type"), HOSTILE_UPLOADS)
def test_the_api_never_echoes_an_upload(client, data, filename, content_type):
    answer = client.post("/api/predict", data=upload(data, filename, content_type))
    assert answer.mimetype == "application/json"
    body = answer.get_data()
    assert filename.encode() not in body and b"<script" not in body and data not in body


@pytest.mark.parametrize(("data", "filename", "content_type"), HOSTILE_UPLOADS)
def test_the_page_never_echoes_an_upload(client, csrf_token, data, filename, content_type):
    answer = client.post(
        "/",
        data={"csrf_token": csrf_token, **upload(data, filename, content_type)},
        follow_redirects=True,
    )
    assert answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert filename not in page and "alert(" not in page


def test_kept_uploads_are_not_reachable_over_http(make_app, tmp_path):
    app = make_app(KEEP_UPLOADS=True)
    client = app.test_client()
    assert (
        client.post(
            "/api/predict", data=upload(gif_html_polyglot(), "page.html", "text/html")
        ).status_code
        == 200
    )
    [kept] = [path for path in (tmp_path / "uploads").rglob("*") if path.is_file()]
    assert kept.suffix == ".gif" and "page" not in kept.name
    for url in (
        f"/uploads/{kept.name}",
        f"/static/{kept.name}",
        f"/static/../uploads/{kept.name}",
        f"/{kept.name}",
        "/static/page.html",
    ):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert gif_html_polyglot() not in answer.get_data()
