"""No card data or secrets in logs: every record written while a card is held (plainly and with 3-D Secure),
a purchase is made and a webhook arrives, at DEBUG and from every logger (Stripe's SDK and urllib3 included)."""

import json
import logging

import pytest
from django.test import Client

from payments.stripe_client import stripe_client
from tests.payments.conftest import THREE_D_SECURE_CARD, admit, authorize, post_json, three_d_secure_method

from .conftest import veteran

pytestmark = pytest.mark.django_db(transaction=True)

CARD_NUMBERS = ["4242424242424242", THREE_D_SECURE_CARD]


@pytest.fixture
def payments(stripe_settings, eager_tasks):
    return stripe_settings


def _run_and_collect(payments, make_drop, caplog, level: int) -> tuple[str, list[str]]:
    """Hold two cards (one with 3-D Secure), buy, receive a bad webhook; return the log text and the secrets."""
    drop = make_drop(quantity=3)
    method_3ds = three_d_secure_method(stripe_client())  # made by the test itself, before the capture starts
    buyer, waiting = Client(), Client()
    buyer.force_login(veteran())
    waiting.force_login(veteran())
    caplog.set_level(level)
    caplog.clear()

    assert authorize(buyer, drop).status_code == 202
    assert authorize(waiting, drop, method_3ds).status_code == 202
    admit(drop, int(buyer.session["_auth_user_id"]), int(waiting.session["_auth_user_id"]))  # holds placed
    three_ds = waiting.get(f"/api/drops/{drop.slug}/authorization")
    assert three_ds.json()["status"] == "requires_action"
    assert waiting.get(f"/api/drops/{drop.slug}/authorization").status_code == 200  # reads the secret again
    bought = post_json(buyer, f"/api/drops/{drop.slug}/purchase", {"quantity": 1})
    assert bought.status_code == 201
    webhook = Client().post("/payments/stripe/webhook", json.dumps({"id": "evt_1"}), content_type="application/json")
    assert webhook.status_code == 400

    client_secret = three_ds.json()["client_secret"]
    forbidden = [payments.STRIPE_SECRET_KEY, payments.STRIPE_WEBHOOK_SECRET, client_secret, *CARD_NUMBERS]
    text = "\n".join(
        f"{record.name} {record.getMessage()} {record.args!r} {getattr(record, '__dict__', {})!r}"
        for record in caplog.records
    )
    assert caplog.records, "nothing was logged at all: the capture is not working"
    assert all(forbidden)
    return text, [*forbidden, "_secret_"]


def test_at_the_production_log_level_nothing_secret_is_logged(payments, make_drop, caplog):
    """LOG_LEVEL defaults to INFO: Stripe's SDK then logs each call's method, path and status, nothing more."""
    text, forbidden = _run_and_collect(payments, make_drop, caplog, logging.INFO)
    assert "Stripe API response" in text
    for secret in forbidden:
        assert secret not in text, secret


def test_even_at_debug_nothing_secret_is_logged(payments, make_drop, caplog):
    text, forbidden = _run_and_collect(payments, make_drop, caplog, logging.DEBUG)
    for secret in forbidden:
        assert secret not in text, secret


def test_a_blocked_sign_up_is_a_429_with_retry_after_and_no_traceback(settings, caplog):
    from django.test import Client

    # Given an address that has signed up as often as the page allows (10 a minute)
    settings.RATELIMIT_ENABLE = True
    client = Client()
    for i in range(10):
        client.post("/accounts/signup/", {"username": f"u{i}", "password1": "x", "password2": "y"})
    caplog.set_level(logging.INFO)

    # When it tries once more
    response = client.post("/accounts/signup/", {"username": "u10", "password1": "x", "password2": "y"})

    # Then it is told to wait, and nothing is logged with a traceback
    assert (response.status_code, response["Retry-After"]) == (429, "60")
    assert response.json()["error"]["code"] == "rate_limited"
    assert [r for r in caplog.records if r.exc_info] == []


@pytest.mark.parametrize("request_kwargs", [
    {"path": "/", "HTTP_HOST": "evil.example"},
    {"path": "/api/session", "data": b"--x\r\nbroken", "content_type": "multipart/form-data; boundary=x",
     "method": "post"},
])  # fmt: skip
def test_a_clients_mistake_is_one_log_line_without_a_traceback(client, caplog, request_kwargs):
    from flashsale.logs import ClientErrorFilter

    # Given a request a client got wrong (a Host we do not serve, a multipart body that does not parse)
    kwargs = dict(request_kwargs)
    method = kwargs.pop("method", "get")
    caplog.set_level(logging.INFO)

    # When it is answered
    response = getattr(client, method)(kwargs.pop("path"), **kwargs)

    # Then it is a 4xx, and what the log's handler writes of it has no traceback
    assert 400 <= response.status_code < 500
    logged = [r for r in caplog.records if r.name.startswith(("django.security", "django.request"))]
    assert logged
    for record in logged:
        ClientErrorFilter().filter(record)
        assert record.exc_info is None
        assert "Traceback" not in logging.Formatter().format(record)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_password_guessing_on_the_sign_in_pages_is_throttled(settings, path):
    from django.test import Client

    from tests.factories import UserFactory

    # Given the merchandiser's account, and a client trying passwords from one address
    settings.RATELIMIT_ENABLE = True
    UserFactory(username="merchandiser", is_staff=True)
    client = Client()
    answers = [client.post(path, {"username": "merchandiser", "password": f"guess-{i}"}).status_code for i in range(6)]

    # Then the first five are the form again, and the sixth is told to wait
    assert answers[:5] == [200] * 5
    assert answers[5] == 429
    # and another address trying the same account is refused too (the per-username limit)
    other = Client(REMOTE_ADDR="198.51.100.77")
    assert other.post(path, {"username": "merchandiser", "password": "guess-7"}).status_code == 429
