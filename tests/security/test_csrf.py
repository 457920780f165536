"""CSRF on every unsafe request: every URL pattern, every unsafe method, Django's path and the queue's fast path."""

import json
import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from flashsale.asgi import application
from tests.conftest import BROWSER_USER_AGENT
from waitingroom.redis_keys import queue_keys

from .conftest import csrf_pair, veteran

pytestmark = pytest.mark.django_db

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Exempt by design: Stripe signs the body instead (see test_the_webhook_needs_stripes_signature).
EXEMPT = {"payments/stripe/webhook"}


def _routes(resolver=None, prefix: str = ""):
    """Yield every URL pattern of the project as a route string with Django's converters in it."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def _concrete(route: str, *, slug: str, pk: int) -> str:
    """A path that resolves to the route: converters filled with the drop's slug and id."""
    route = re.sub(r"\(\?P<app_label>[^)]*\)", "inventory", route)  # admin's regex route of an app's index
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    for converter, value in (("<slug:", slug), ("<int:", str(pk)), ("<path:", "x"), ("<str:", "x"), ("<", "x")):
        while converter in route:
            start = route.index(converter)
            route = route[:start] + value + route[route.index(">", start) + 1 :]
    return "/" + route


@pytest.fixture
def staff(db):
    return veteran(is_staff=True, is_superuser=True)


def test_the_routes_are_all_found():
    routes = set(_routes())
    assert {
        "api/session",
        "api/shoppers",
        "api/drops/<slug:slug>/authorization",
        "api/drops/<slug:slug>/queue",
        "api/drops/<slug:slug>/purchase",
        "api/drops/<slug:slug>/challenge",
        "accounts/login/",
        "accounts/signup/",
        "payments/stripe/webhook",
    } <= routes
    assert any(route.startswith("admin/") for route in routes)


@pytest.mark.parametrize("who", ["shopper", "staff"])
def test_every_unsafe_request_without_the_token_is_refused(who, drop, staff):
    user = staff if who == "staff" else veteran()
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=BROWSER_USER_AGENT)
    client.force_login(user)
    client.get("/api/session")  # the csrftoken cookie is set; only the header is missing
    checked = 0
    for route in sorted(set(_routes())):
        if route in EXEMPT or "(?P<url>.*)" in route:
            continue
        path = _concrete(route, slug=drop.slug, pk=drop.pk)
        for method in UNSAFE:
            response = client.generic(method, path, json.dumps({}), content_type="application/json")
            assert response.status_code == 403, (method, path, response.status_code)
            if path.startswith("/api/"):
                assert response.json()["error"]["code"] == "csrf_failed", (method, path)
            checked += 1
    assert checked > 100
    assert client.get("/api/session").json()["authenticated"]  # DELETE /api/session signed nobody out


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/session", {"username": "x", "password": "y"}),
        ("DELETE", "/api/session", {}),
        ("POST", "/api/shoppers", {"username": "x", "email": "x@example.com", "password": "y"}),
        ("POST", "/api/drops/{slug}/challenge", {}),
        ("POST", "/api/drops/{slug}/authorization", {"payment_method": "pm_card_visa"}),
        ("POST", "/api/drops/{slug}/queue", {"altcha": "x", "fingerprint": "fp-1234567890"}),
        ("POST", "/api/drops/{slug}/purchase", {}),
    ],
)
@pytest.mark.parametrize("token", ["missing", "wrong", "foreign-origin"])
def test_the_api_refuses_a_missing_wrong_or_cross_site_token(method, path, body, token, drop):
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=BROWSER_USER_AGENT)
    client.force_login(veteran())
    cookie = client.get("/api/session").cookies["csrftoken"].value
    headers = {
        "missing": {},
        "wrong": {"HTTP_X_CSRFTOKEN": csrf_pair()},
        "foreign-origin": {"HTTP_X_CSRFTOKEN": cookie, "HTTP_ORIGIN": "https://evil.example"},
    }[token]
    response = client.generic(
        method, path.format(slug=drop.slug), json.dumps(body), content_type="application/json", **headers
    )
    assert (response.status_code, response.json()["error"]["code"]) == (403, "csrf_failed")
    # ...and the same request with the token is not refused for CSRF (so the check above means something).
    good = client.generic(
        method, path.format(slug=drop.slug), json.dumps(body), content_type="application/json", HTTP_X_CSRFTOKEN=cookie
    )
    assert good.status_code != 403 or good.json()["error"]["code"] != "csrf_failed"


def test_the_webhook_needs_stripes_signature(drop):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/payments/stripe/webhook", "{}", content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_signature")


# --- the queue's fast path -------------------------------------------------------------------------


def _fast(method, path, *, session, cookie_token, header_token=None, origin=None, body=b"{}"):
    headers = [
        (b"host", b"testserver"),
        (b"user-agent", BROWSER_USER_AGENT.encode()),
        (b"cookie", f"sessionid={session}; csrftoken={cookie_token}".encode()),
        (b"content-type", b"application/json"),
    ]
    if header_token:
        headers.append((b"x-csrftoken", header_token.encode()))
    if origin:
        headers.append((b"origin", origin.encode()))
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    response = async_to_sync(communicator.get_response)(timeout=5)
    return response["status"], json.loads(response["body"] or b"{}")


@pytest.mark.parametrize(
    ("header_token", "origin"),
    [(None, None), ("wrong", None), ("right", "https://evil.example"), ("right", "null")],
    ids=["missing", "wrong", "foreign-origin", "null-origin"],
)
def test_the_fast_path_refuses_a_join_without_the_token(drop, redis, header_token, origin):
    from waitingroom import selectors

    client = Client()
    client.force_login(veteran())
    cookie = client.get("/api/session").cookies["csrftoken"].value
    session = client.cookies["sessionid"].value
    selectors.drop_cached_get(slug=drop.slug)  # served by the fast path, not by Django's fall-through
    token = {None: None, "wrong": csrf_pair(), "right": cookie}[header_token]
    status, data = _fast(
        "POST", f"/api/drops/{drop.slug}/queue", session=session, cookie_token=cookie, header_token=token, origin=origin
    )
    assert (status, data["error"]["code"]) == (403, "csrf_failed")
    assert redis.hlen(queue_keys(drop.pk).entries) == 0
    # With the token it gets past CSRF (and stops at the proof-of-work).
    path = f"/api/drops/{drop.slug}/queue"
    status, data = _fast("POST", path, session=session, cookie_token=cookie, header_token=cookie)
    assert (status, data["error"]["code"]) == (400, "invalid_request")
