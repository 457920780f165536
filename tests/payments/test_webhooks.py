"""POST /payments/stripe/webhook: signature on the raw body, once per event id, holds kept in step."""

import hashlib
import hmac
import json
import time

import pytest
import requests
from django.test import Client

from inventory.models import Order
from payments.models import Authorization, StripeEvent
from tests.payments.conftest import admit, authorize, hold, post_json, three_d_secure_method
from waitingroom.redis_keys import queue_keys

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/payments/stripe/webhook"


WEBHOOK_SECRET = "whsec_test_secret"  # what the stripe_settings fixture configures


def signed(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Return a Stripe-Signature header for the payload, as Stripe (and localstripe) makes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(event_id: str, event_type: str, obj: dict) -> bytes:
    return json.dumps(
        {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()), "data": {"object": obj}}
    ).encode()


def deliver(body: bytes, signature: str | None):
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature else {}
    return Client(enforce_csrf_checks=True).post(URL, body, content_type="application/json", **headers)


def intent_json(stripe_sdk, intent_id: str) -> dict:
    return stripe_sdk.v1.payment_intents.retrieve(intent_id).to_dict()


@pytest.mark.parametrize(
    "signature",
    [None, "t=1,v1=deadbeef", signed(b"another body"), "garbage", signed(b"", secret="whsec_someone_else")],
)
def test_a_bad_signature_is_refused_and_changes_nothing(make_drop, login, stripe_sdk, signature):
    drop = make_drop()
    hold(login(), drop)
    held = Authorization.objects.get()
    stripe_sdk.v1.payment_intents.cancel(held.payment_intent_id)
    body = event_body("evt_bad", "payment_intent.canceled", intent_json(stripe_sdk, held.payment_intent_id))

    response = deliver(body, signature)

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_signature")
    assert StripeEvent.objects.count() == 0
    assert Authorization.objects.get().status == "authorized"


def test_a_stale_signature_is_refused(make_drop, login, stripe_sdk):
    body = event_body("evt_old", "payment_intent.canceled", {"id": "pi_x", "status": "canceled"})

    response = deliver(body, signed(body, timestamp=int(time.time()) - 3600))

    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0


def test_a_cancel_made_in_stripe_reaches_the_hold_once(make_drop, login, stripe_sdk, redis):
    drop = make_drop()
    client = login()
    hold(client, drop)
    held = Authorization.objects.get()
    stripe_sdk.v1.payment_intents.cancel(held.payment_intent_id)
    obj = {**intent_json(stripe_sdk, held.payment_intent_id), "cancellation_reason": "requested_by_customer"}
    body = event_body("evt_cancel_1", "payment_intent.canceled", obj)

    first = deliver(body, signed(body))

    assert (first.status_code, first.json()) == (200, {"received": True, "duplicate": False})
    held.refresh_from_db()
    assert (held.status, held.cancellation_reason) == ("canceled", "requested_by_customer")
    assert redis.hlen(queue_keys(drop.pk).holds) == 0
    changed_at = held.updated_at

    replay = deliver(body, signed(body))

    assert (replay.status_code, replay.json()) == (200, {"received": True, "duplicate": True})
    held.refresh_from_db()
    assert held.updated_at == changed_at
    assert StripeEvent.objects.filter(event_id="evt_cancel_1").count() == 1


def test_a_replayed_event_does_not_undo_a_later_change(make_drop, login, stripe_sdk, localstripe, redis):
    """3-D Secure passed (event 1), then the hold was canceled: replaying event 1 must not re-authorize it."""
    drop = make_drop()
    client = login()
    hold(client, drop, three_d_secure_method(stripe_sdk))
    secret = client.get(f"/api/drops/{drop.slug}/authorization").json()["client_secret"]
    held = Authorization.objects.get()
    requests.post(
        f"{localstripe}/v1/payment_intents/{held.payment_intent_id}/_authenticate",
        data={"client_secret": secret, "success": "true", "key": "pk_test_localstripe"},
        timeout=5,
    ).raise_for_status()
    capturable = event_body(
        "evt_capturable", "payment_intent.amount_capturable_updated", intent_json(stripe_sdk, held.payment_intent_id)
    )

    assert deliver(capturable, signed(capturable)).status_code == 200
    held.refresh_from_db()
    assert held.status == "authorized"
    assert redis.hget(queue_keys(drop.pk).holds, client.shopper.pk) == b"r"

    stripe_sdk.v1.payment_intents.cancel(held.payment_intent_id)
    canceled = event_body("evt_canceled", "payment_intent.canceled", intent_json(stripe_sdk, held.payment_intent_id))
    deliver(canceled, signed(canceled))
    deliver(capturable, signed(capturable))

    held.refresh_from_db()
    assert held.status == "canceled"
    assert redis.hlen(queue_keys(drop.pk).holds) == 0
    assert StripeEvent.objects.count() == 2


def test_a_refund_made_in_stripe_marks_the_paid_order_refunded(make_drop, login, stripe_sdk):
    drop = make_drop()
    client = login()
    authorize(client, drop)
    admit(drop, client.shopper.pk)
    post_json(client, f"/api/drops/{drop.slug}/purchase")
    held = Authorization.objects.get()
    stripe_sdk.v1.refunds.create(params={"payment_intent": held.payment_intent_id, "amount": 12900})
    charge = intent_json(stripe_sdk, held.payment_intent_id)["latest_charge"]
    body = event_body("evt_refund", "charge.refunded", {**charge, "amount_refunded": 12900})

    assert deliver(body, signed(body)).status_code == 200

    assert Order.objects.get().status == "refunded"


def test_an_event_about_someone_elses_payment_is_recorded_and_ignored():
    body = event_body("evt_foreign", "payment_intent.canceled", {"id": "pi_not_ours", "status": "canceled"})

    assert deliver(body, signed(body)).json() == {"received": True, "duplicate": False}
    assert StripeEvent.objects.get().type == "payment_intent.canceled"


def test_localstripe_delivers_a_signed_event_that_keeps_the_hold_in_step(
    make_drop, login, stripe_sdk, localstripe, live_server
):
    """End to end: localstripe itself signs and posts payment_intent.succeeded to our running server."""
    hook = f"{localstripe}/_config/webhooks/flashsale-test"
    requests.post(
        hook,
        data={"url": f"{live_server.url}{URL}", "secret": WEBHOOK_SECRET, "events[]": ["payment_intent.succeeded"]},
        timeout=5,
    ).raise_for_status()
    try:
        drop = make_drop()
        hold(login(), drop)
        held = Authorization.objects.get()

        stripe_sdk.v1.payment_intents.capture(held.payment_intent_id)  # captured outside our purchase flow

        # localstripe sends a second later (events of earlier tests may arrive too, and are ignored).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Authorization.objects.get().status != "captured":
            time.sleep(0.1)
        held.refresh_from_db()
        assert held.status == "captured"
        assert StripeEvent.objects.filter(type="payment_intent.succeeded").exists()
    finally:
        # Stop deliveries to this test's server: no event type is called this.
        requests.post(
            hook, data={"url": f"{live_server.url}{URL}", "secret": WEBHOOK_SECRET, "events[]": ["none"]}, timeout=5
        )
