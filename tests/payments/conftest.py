"""Fixtures of the payments tests: localstripe as Stripe, signed-in shoppers, admitted shoppers."""

import json
import time

import pytest
import requests
from django.test import Client

from flashsale.checkout import services as checkout_services
from payments import services as payment_services
from payments.models import Authorization
from payments.stripe_client import stripe_client
from tests.factories import UserFactory
from waitingroom import services as waitingroom_services

THREE_D_SECURE_CARD = "4000002500003155"


@pytest.fixture(autouse=True)
def stripe_on(stripe_settings):
    """Every payments test talks to the session's localstripe."""
    return stripe_settings


@pytest.fixture(autouse=True)
def eager_tasks():
    """Run Celery tasks in the test's process when they are sent (after commit, as in production)."""
    from flashsale.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def stripe_sdk():
    """The SDK client the code under test uses, to read what localstripe holds."""
    return stripe_client()


@pytest.fixture
def login():
    """Return a test client signed in as a (new) shopper."""

    def make(shopper=None, **client_kwargs):
        shopper = shopper or UserFactory()
        client = Client(**client_kwargs)
        client.force_login(shopper)
        client.shopper = shopper
        return client

    return make


def post_json(client, url, data=None, **extra):
    body = data if isinstance(data, str | bytes) else json.dumps(data or {})
    return client.post(url, body, content_type="application/json", **extra)


def authorize(client, drop, payment_method="pm_card_visa"):
    """Give the card (the card step): kept for the drop, its hold placed later in queue order."""
    return post_json(client, f"/api/drops/{drop.slug}/authorization", {"payment_method": payment_method})


def hold(client, drop, payment_method="pm_card_visa"):
    """Give the card and have its hold placed now, as the hold scheduler does when the shopper's turn is near
    (for tests about what comes after: captures, cancellations, refunds). Returns the authorization."""
    response = authorize(client, drop, payment_method)
    assert response.status_code in (200, 202), response.content
    shopper_id = int(client.session["_auth_user_id"])
    authorization = Authorization.objects.get(drop=drop, shopper_id=shopper_id, status__in=["scheduled", "authorized"])
    if authorization.status == "scheduled":
        claimed = payment_services.authorization_placing_claim(authorization_id=authorization.pk)
        authorization = payment_services.authorization_place(authorization=claimed)
    state = checkout_services.hold_state_of(authorization)
    waitingroom_services.hold_states_set(drop=drop, states={shopper_id: state})
    return authorization


def three_d_secure_method(stripe_sdk) -> str:
    """Create a card that asks for 3-D Secure (localstripe has no pm_card_... id for one)."""
    card = {"number": THREE_D_SECURE_CARD, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = stripe_sdk.v1.payment_methods.create(params={"type": "card", "card": card})
    return method.id


def finish_three_d_secure(base_url: str, intent_id: str, client_secret: str, *, success: bool = True) -> None:
    """Do what localstripe's Stripe.js does when the shopper passes (or fails) 3-D Secure."""
    response = requests.post(
        f"{base_url}/v1/payment_intents/{intent_id}/_authenticate",
        data={"client_secret": client_secret, "success": "true" if success else "false", "key": "pk_test_localstripe"},
        timeout=5,
    )
    response.raise_for_status()


def admit(drop, *shopper_ids):
    """Queue the shoppers (their cards must be authorized: the join script checks) and admit them."""
    # Every shopper here pays with pm_card_visa, and Stripe's test cards share one fingerprint.
    drop.max_accounts_per_card = 1000
    drop.save(update_fields=["max_accounts_per_card"])
    waitingroom_services.queue_start(drop=drop)
    for shopper_id in shopper_ids:
        waitingroom_services.ticket_issue(drop=drop, shopper_id=shopper_id)
    checkout_services.holds_place_due(drop=drop, budget_seconds=10)
    now = int(time.time() * 1000)
    waitingroom_services.queue_admit_batch(drop=drop, now_ms=now, publish=False)
    waitingroom_services.queue_admit_batch(drop=drop, now_ms=now + 1000, publish=False)
