"""State shared by workers and replicas through a real redis-server: the results kept for the
page without JavaScript, and the rate limits; and what a Redis that is down or hung costs."""

from __future__ import annotations

import io
import secrets
import time

import pytest
import redis

from webapp.errors import StoreUnavailableError
from webapp.redis_client import connection_pool
from webapp.result_store import UNAVAILABLE, RedisResultStore
from webapp.results import Bar, Result

from .support import free_port, hidden_value, read_csrf_token, result_page, upload


def store(url: str, kept: int = 3, max_age: float = 60) -> RedisResultStore:
    """A store on `url`, as one worker makes it."""
    return RedisResultStore(redis.Redis(connection_pool=connection_pool(url, 0.5)), kept, max_age)


def a_result(label: str = "mod") -> Result:
    """A result with every field set."""
    return Result(
        label=label,
        confidence=0.75,
        bars=[Bar(label, 0.75), Bar("rocker", 0.25)],
        class_count=2,
        thumbnail="data:image/jpeg;base64,AAAA",
        photo=bytes(range(256)),
    )


def test_a_result_kept_by_one_worker_is_found_whole_by_another(redis_url):
    result = a_result()
    store(redis_url).put(result)
    found = store(redis_url).get(result.id)
    assert found == result


def test_the_count_bound_holds_across_workers_dropping_the_oldest(redis_url):
    workers = [store(redis_url, kept=3), store(redis_url, kept=3)]
    results = [a_result() for _ in range(5)]
    for index, result in enumerate(results):
        workers[index % 2].put(result)
        time.sleep(0.002)  # distinct times: the order is the order of putting
    assert [workers[0].get(result.id) is not None for result in results] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert redis.Redis.from_url(redis_url).zcard(RedisResultStore.INDEX) == 3


def test_a_kept_result_expires_after_its_age_and_a_click_keeps_that_expiry(redis_url):
    kept = store(redis_url, max_age=60)
    result = a_result()
    kept.put(result)
    client = redis.Redis.from_url(redis_url)
    key = RedisResultStore.PREFIX + result.id
    assert 58 <= client.ttl(key) <= 60
    result.heatmap, result.feedback = "data:image/jpeg;base64,BBBB", "rocker"
    kept.update(result)
    assert 58 <= client.ttl(key) <= 60
    assert kept.get(result.id).feedback == "rocker"
    client.delete(key)  # as if it expired
    kept.update(result)
    assert kept.get(result.id) is None and not client.exists(key)


def test_two_apps_on_one_redis_serve_why_for_each_others_results(make_app, png_pictures, redis_url):
    config = {"REDIS_URL": redis_url, "SECRET_KEY": secrets.token_hex(32)}  # one for both
    first, second = make_app(**config), make_app(**config)
    client = first.test_client()
    html = result_page(client, png_pictures["mod0"])
    cookie = client.get_cookie("session")
    other = second.test_client()
    other.set_cookie("session", cookie.value)
    answer = other.post(
        "/why",
        data={
            "csrf_token": hidden_value(html, "csrf_token"),
            "result": hidden_value(html, "result"),
        },
    )
    anchor = f"/#why-{hidden_value(html, 'result')}"
    assert answer.status_code == 302 and answer.headers["Location"] == anchor
    assert 'class="result-heatmap' in other.get("/").get_data(as_text=True)


@pytest.fixture
def nowhere() -> str:
    """A Redis address nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


def test_a_redis_that_is_down_costs_a_sentence_not_the_answer(make_app, png_pictures, nowhere):
    client = make_app(REDIS_URL=nowhere).test_client()
    started = time.monotonic()
    assert upload(client, png_pictures["rocker1"]).status_code == 302
    seconds = time.monotonic() - started
    html = client.get("/").get_data(as_text=True)
    assert "That picture belongs to rocker (" in html
    assert UNAVAILABLE.split(" (")[0].replace('"', "&#34;") in html
    print(f"Redis down: the form post took {seconds:.3f} s")


def test_a_hung_redis_costs_one_timeout_per_command(redis_server):
    hung = store(redis_server.url)
    hung.client.connection_pool.reset()
    redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="cannot be used just now"):
            hung.get("anything")
        seconds = time.monotonic() - started
    finally:
        redis_server.resume()
    # one 0.5 s read timeout and no retry (redis-py's default, ten retries with a backoff,
    # would take 5.5 s and more)
    assert hung.client.connection_pool.connection_kwargs["retry"].get_retries() == 0
    assert seconds < 5, seconds
    print(f"Redis hung: one read gave up after {seconds:.2f} s")


@pytest.mark.parametrize("url", ["http://redis:6379", "redis://host:notaport"])
def test_a_redis_url_that_is_not_one_stops_start_up_with_a_sentence(make_app, url):
    from classifier.errors import StartupError

    with pytest.raises(StartupError, match="SEAFRONT_REDIS_URL"):
        make_app(REDIS_URL=url)


# --- rate limits ------------------------------------------------------------------------------


def predict(client, png: bytes, **environ):
    """POST /api/predict as multipart, with extra WSGI environ (REMOTE_ADDR, headers)."""
    return client.post(
        "/api/predict",
        data={"file": (io.BytesIO(png), "p.png")},
        environ_base={"REMOTE_ADDR": "10.0.0.5", **environ},
    )


def test_the_limit_holds_across_replicas_and_the_429_says_when_to_try_again(
    make_app, png_pictures, redis_url
):
    first, second = (make_app(REDIS_URL=redis_url, RATE_LIMIT="2/minute") for _ in range(2))
    png = png_pictures["mod0"]
    assert predict(first.test_client(), png).status_code == 200
    assert predict(second.test_client(), png).status_code == 200
    refused = predict(first.test_client(), png)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 61  # the rest of the minute-long window, rounded up
    assert refused.get_json()["error"] == (
        f"Too many photos from your address (the limit is 2 per 1 minute): try again in {wait} s."
    )


def test_the_page_gets_its_429_as_a_page(make_app, png_pictures):
    client = make_app(RATE_LIMIT="1/minute").test_client()
    token = read_csrf_token(client.get("/").get_data(as_text=True))

    def post():
        return client.post(
            "/",
            data={"csrf_token": token, "file": (io.BytesIO(png_pictures["mod0"]), "p.png")},
            content_type="multipart/form-data",
        )

    assert post().status_code == 302
    refused = post()
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert "Too many photos from your address" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 200  # only posting photos is limited


@pytest.mark.parametrize(
    ("trusted", "forwarded", "separate"),
    [
        (0, ["203.0.113.1", "203.0.113.2"], False),  # not trusted: every request is the proxy's
        (1, ["203.0.113.1", "203.0.113.2"], True),  # one nginx: its X-Forwarded-For is believed
        # a client's own X-Forwarded-For comes first; the trusted hop's last entry is used
        (1, ["198.51.100.7, 203.0.113.1", "198.51.100.8, 203.0.113.1"], False),
    ],
)
def test_the_client_address_comes_from_x_forwarded_for_only_as_far_as_trusted(
    make_app, png_pictures, trusted, forwarded, separate
):
    client = make_app(RATE_LIMIT="1/minute", TRUSTED_PROXIES=trusted).test_client()
    png = png_pictures["mod0"]
    statuses = [
        predict(client, png, HTTP_X_FORWARDED_FOR=address).status_code for address in forwarded
    ]
    assert statuses == ([200, 200] if separate else [200, 429])


def test_with_redis_down_the_limit_falls_back_to_each_workers_memory(
    make_app, png_pictures, nowhere
):
    client = make_app(REDIS_URL=nowhere, RATE_LIMIT="2/minute").test_client()
    statuses = [predict(client, png_pictures["mod0"]).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
