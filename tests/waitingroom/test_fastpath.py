"""The lean ASGI path for join and position: same answers as Django's view, without Django's cost."""

import pytest
from asgiref.sync import async_to_sync

from inventory import services as inventory_services
from tests.factories import DropFactory
from waitingroom import selectors, services
from waitingroom.fastpath import QueueFastPath
from waitingroom.redis_keys import queue_keys

from .support import Django, body_of, call, join_body, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cheap_pow(settings):
    settings.POW_COST = 500
    selectors.drop_cache_clear()


@pytest.fixture
def live(redis):
    drop = DropFactory(slug="air", quantity=20)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    selectors.drop_cached_get(slug="air")  # what the first request of each second does through Django
    return drop


@pytest.fixture
def shopper(client, redis, live):
    return signed_in(client, redis, live)


def test_join_and_position_without_django(shopper, live, django_assert_num_queries):
    django, body = Django(), body_of(join_body(shopper["client"]))
    app = QueueFastPath(django)
    with django_assert_num_queries(0):
        status, entry, headers = call(app, "POST", "/api/drops/air/queue", body=body, shopper=shopper)
        assert (status, entry["status"], entry["ticket"], entry["position"]) == (201, "waiting", 1, 1)
        assert headers["content-type"] == "application/json"
        again = call(app, "POST", "/api/drops/air/queue", body=body_of(join_body(shopper["client"])), shopper=shopper)
        assert (again[0], again[1]["ticket"]) == (200, 1)
        status, entry, _ = call(app, "GET", "/api/drops/air/queue", shopper=shopper)
        assert (status, entry["position"]) == (200, 1)
    assert django.calls == []


def test_a_drop_not_cached_this_second_is_read_once_then_served(shopper, live, django_assert_num_queries):
    selectors.drop_cache_clear()
    app = QueueFastPath(Django())
    with django_assert_num_queries(1):
        assert call(app, "GET", "/api/drops/air/queue", shopper=shopper)[0] == 404
        assert call(app, "GET", "/api/drops/air/queue", shopper=shopper)[0] == 404
    assert call(app, "GET", "/api/drops/nope/queue", shopper=shopper)[1]["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b"[1]", 400, "invalid_request"),
        (b'{"fingerprint": "fp-1234567890"}', 400, "invalid_request"),
        (b'{"altcha": "bm90IGpzb24=", "fingerprint": "fp-1234567890"}', 400, "pow_invalid"),
        (b'{"altcha": "x", "fingerprint": "tiny"}', 400, "invalid_request"),
    ],
)
def test_bad_input_gets_the_same_errors_and_changes_nothing(shopper, live, redis, body, status, code):
    got = call(QueueFastPath(Django()), "POST", "/api/drops/air/queue", body=body, shopper=shopper)
    assert (got[0], got[1]["error"]["code"]) == (status, code)
    assert redis.hlen(queue_keys(live.pk).entries) == 0


def test_csrf_is_checked_by_djangos_own_middleware(shopper, live, redis):
    body = body_of(join_body(shopper["client"]))
    status, data, _ = call(
        QueueFastPath(Django()), "POST", "/api/drops/air/queue", body=body, shopper=shopper, csrf=False
    )
    assert (status, data["error"]["code"]) == (403, "csrf_failed")
    assert redis.hlen(queue_keys(live.pk).entries) == 0


def test_no_session_is_401_and_a_bot_is_403(shopper, live, redis):
    anonymous = call(QueueFastPath(Django()), "GET", "/api/drops/air/queue")
    # no session cookie at all: Django answers (it owns sessions that are not in the cache)
    assert anonymous[0] == 299
    body = body_of(join_body(shopper["client"], signals={"webdriver": True}))
    status, data, _ = call(QueueFastPath(Django()), "POST", "/api/drops/air/queue", body=body, shopper=shopper)
    assert (status, data["error"]["code"]) == (403, "bot_suspected")
    assert selectors.bot_stats_get(drop_id=live.pk).blocked == {"webdriver": 1}


def test_rate_limited_with_retry_after(shopper, live, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "queue-read": [("shopper", "2/m")]}
    app = QueueFastPath(Django())
    statuses = [call(app, "GET", "/api/drops/air/queue", shopper=shopper)[0] for _ in range(3)]
    assert statuses == [404, 404, 429]
    _status, data, headers = call(app, "GET", "/api/drops/air/queue", shopper=shopper)
    assert data["error"]["code"] == "rate_limited"
    assert 1 <= int(headers["retry-after"]) <= 60


def test_anything_unusual_falls_through_to_django_with_its_body(shopper, live, settings):
    django = Django()
    app = QueueFastPath(django)
    body = body_of({"altcha": "x", "fingerprint": "fp-1234567890"})
    settings.RECAPTCHA_PUBLIC_KEY, settings.RECAPTCHA_PRIVATE_KEY = "site", "secret"
    assert call(app, "POST", "/api/drops/air/queue", body=body, shopper=shopper)[0] == 299
    big = body_of({"altcha": "x" * 20_000, "fingerprint": "fp-1234567890"})
    assert call(app, "POST", "/api/drops/air/queue", body=big, shopper=shopper)[0] == 299
    assert django.calls == [("/api/drops/air/queue", body), ("/api/drops/air/queue", big)]
    other = call(app, "GET", "/api/drops/air", shopper=shopper)
    assert other[0] == 299  # not a queue path


def test_the_real_application_serves_the_contract(shopper, live):
    from flashsale.asgi import application

    body = body_of(join_body(shopper["client"]))
    status, entry, _ = call(application, "POST", "/api/drops/air/queue", body=body, shopper=shopper)
    assert (status, entry["ticket"]) == (201, 1)


def test_a_host_outside_allowed_hosts_is_a_400_not_a_500(shopper, live):
    body = body_of(join_body(shopper["client"]))
    app = QueueFastPath(Django())
    status, _data, _ = call(app, "POST", "/api/drops/air/queue", body=body, shopper=shopper,
                           headers=[(b"host", b"evil.example")])  # fmt: skip
    assert status == 299  # handed to Django, which refuses it (400) as it refuses any such request


def test_answers_carry_the_security_headers_django_would_add(shopper, live, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    _status, _data, headers = call(QueueFastPath(Django()), "GET", "/api/drops/air/queue", shopper=shopper)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in headers  # plain HTTP: HSTS only over HTTPS


def test_behind_a_tls_proxy_the_answer_carries_hsts_as_django_would(shopper, live, settings):
    # Given a proxy that ends TLS and says so in the header Django is told to trust
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    app = QueueFastPath(Django())
    _status, _data, headers = call(app, "GET", "/api/drops/air/queue", shopper=shopper,
                                   headers=[(b"x-forwarded-proto", b"https")])  # fmt: skip
    assert headers["strict-transport-security"] == "max-age=3600"
    # A request the proxy marked as plain HTTP gets none
    _status, _data, headers = call(app, "GET", "/api/drops/air/queue", shopper=shopper,
                                   headers=[(b"x-forwarded-proto", b"http")])  # fmt: skip
    assert "strict-transport-security" not in headers


def test_joins_are_counted_in_the_join_call_and_bad_ones_too(shopper, live, settings, redis):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "queue-join": [("shopper", "2/m")]}
    app = QueueFastPath(Django())
    first = call(app, "POST", "/api/drops/air/queue", body=body_of(join_body(shopper["client"])), shopper=shopper)
    assert first[0] == 201  # counted inside the join script itself
    bad = call(app, "POST", "/api/drops/air/queue", body=b"{oops", shopper=shopper)
    assert bad[0] == 400  # refused before Redis, counted all the same
    third = call(app, "POST", "/api/drops/air/queue", body=body_of(join_body(shopper["client"])), shopper=shopper)
    assert (third[0], third[1]["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(third[2]["retry-after"]) <= 60
    assert redis.hlen(queue_keys(live.pk).entries) == 1


def test_a_join_whose_body_is_cut_off_by_a_disconnect_is_neither_run_nor_answered():
    # Given a client that sends half its join body and goes away
    django = Django()
    sent = []
    messages = [
        {"type": "http.request", "body": b'{"altcha": "', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/drops/any/queue", "headers": [], "query_string": b""}

    # When the fast path reads it
    async_to_sync(QueueFastPath(django))(scope, receive, send)

    # Then nothing answers and nothing reaches Django
    assert sent == []
    assert django.calls == []


def test_an_underscore_header_cannot_pass_for_the_proxys_on_the_lean_path(shopper, live, settings):
    # Given a server behind one proxy, and a client that adds X_Forwarded_Proto: https to a plain request
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    app = QueueFastPath(Django())

    # When the lean path answers
    _status, _data, headers = call(app, "GET", "/api/drops/air/queue", shopper=shopper,
                                   headers=[(b"x_forwarded_proto", b"https")])  # fmt: skip

    # Then the request is plain HTTP, as Django's own handler would see it (the header is dropped)
    assert "strict-transport-security" not in headers
