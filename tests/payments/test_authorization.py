"""The card step (POST/GET /api/drops/{slug}/authorization) and the hold placed for it in queue order,
against a real localstripe, Redis and database."""

from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.test import Client
from django.utils import timezone

from flashsale.checkout import services as checkout_services
from inventory import services as inventory_services
from payments.models import Authorization
from tests.payments.conftest import authorize, finish_three_d_secure, post_json, three_d_secure_method
from waitingroom import selectors as queue_selectors
from waitingroom import services as queue_services
from waitingroom.redis_keys import queue_keys

pytestmark = pytest.mark.django_db(transaction=True)


def queued(drop, *clients):
    """The shoppers join the queue (their cards given), in this order."""
    queue_services.queue_start(drop=drop)
    for client in clients:
        queue_services.ticket_issue(drop=drop, shopper_id=client.shopper.pk)


def place(drop):
    return checkout_services.holds_place_due(drop=drop, budget_seconds=10)


def hold_state(redis, drop, client):
    state = redis.hget(queue_keys(drop.pk).holds, client.shopper.pk)
    return state.decode() if state else None


def intents_of(localstripe, drop, *, since: set[str] | None = None):
    """The PaymentIntents localstripe holds for the drop (what Stripe would bill), leaving out ``since``'s
    (drop ids repeat across tests; localstripe lives for the whole session)."""
    listing = requests.get(
        f"{localstripe}/v1/payment_intents", params={"limit": 1_000_000}, auth=("sk_test_x", ""), timeout=10
    )
    return [
        pi
        for pi in listing.json()["data"]
        if pi["metadata"].get("drop_id") == str(drop.pk) and pi["id"] not in (since or set())
    ]


def test_giving_a_card_answers_202_scheduled_at_once_with_no_stripe_call(make_drop, login, redis, localstripe):
    # Given a live drop with a limit of two per customer
    drop = make_drop(per_customer_limit=2)
    client = login()
    before = {pi["id"] for pi in intents_of(localstripe, drop)}

    # When the shopper gives a card
    response = authorize(client, drop)

    # Then it is kept for the drop, its hold still to be placed, and Stripe was not called
    assert response.status_code == 202
    assert response.json() == {
        "status": "scheduled",
        "amount": "258.00",
        "currency": "usd",
        "card": None,
        "decline_code": None,
        "client_secret": None,
    }
    authorization = Authorization.objects.get(drop=drop, shopper=client.shopper)
    assert (authorization.status, authorization.payment_method_id, authorization.payment_intent_id) == (
        "scheduled",
        "pm_card_visa",
        None,
    )
    assert intents_of(localstripe, drop, since=before) == []
    assert hold_state(redis, drop, client) == "s"  # the join script lets the shopper in


def test_the_hold_is_placed_in_one_call_when_the_turn_comes_near(make_drop, login, redis, stripe_sdk):
    # Given a shopper who gave a card and joined
    drop = make_drop(per_customer_limit=2)
    client = login()
    authorize(client, drop)
    queued(drop, client)

    # When the hold scheduler runs
    run = place(drop)

    # Then the hold is placed: price x limit, manual capture, no customer, the card known
    assert (run.placed, run.failed) == (1, 0)
    authorization = Authorization.objects.get(drop=drop, shopper=client.shopper)
    assert (authorization.status, authorization.amount) == ("authorized", Decimal("258.00"))
    assert (authorization.card_brand, authorization.card_last4) == ("visa", "4242")
    assert authorization.card_fingerprint
    assert authorization.capture_before - timezone.now() > timedelta(days=6, hours=23)
    intent = stripe_sdk.v1.payment_intents.retrieve(authorization.payment_intent_id)
    assert (intent.status, intent.amount, intent.capture_method, intent.customer) == (
        "requires_capture",
        25800,
        "manual",
        None,
    )
    assert hold_state(redis, drop, client) == "r"
    assert authorize(client, drop).json()["card"] == {"brand": "visa", "last4": "4242"}


def test_repeating_the_card_step_returns_the_same_authorization(make_drop, login, localstripe):
    drop = make_drop()
    client = login()
    first = authorize(client, drop)

    again = authorize(client, drop, "pm_card_chargeCustomerFail")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert list(Authorization.objects.filter(drop=drop).values_list("payment_method_id", flat=True)) == ["pm_card_visa"]


def test_a_declined_hold_asks_for_payment_and_another_card_keeps_the_place(make_drop, login, redis):
    # Given two shoppers in line, the first with a card that is declined when its hold is placed (Stripe's test
    # cards share one fingerprint, so the drop allows several accounts per card)
    drop = make_drop(max_accounts_per_card=10)
    first, second = login(), login()
    authorize(first, drop, "pm_card_chargeCustomerFail")
    authorize(second, drop)
    queued(drop, first, second)

    # When the holds are placed
    place(drop)

    # Then the first shopper is told payment is required, with the reason, and keeps ticket 1
    entry = first.get(f"/api/drops/{drop.slug}/queue").json()
    assert (entry["status"], entry["ticket"], entry["decline_code"]) == ("payment_required", 1, "card_declined")
    card = first.get(f"/api/drops/{drop.slug}/authorization").json()
    assert (card["status"], card["decline_code"]) == ("failed", "card_declined")

    # When they give another card, it is kept at once and placed at the next run
    assert authorize(first, drop, "pm_card_visa").status_code == 202
    assert hold_state(redis, drop, first) == "s"
    place(drop)

    # Then their hold is placed, and they are still first in line
    assert list(Authorization.objects.filter(shopper=first.shopper).order_by("attempt").values_list("status")) == [
        ("failed",),
        ("authorized",),
    ]
    entry = queue_selectors.entry_get(drop=drop, shopper_id=first.shopper.pk)
    assert (entry.status, entry.ticket, entry.position) == ("waiting", 1, 1)


def test_three_d_secure_is_done_on_the_page_when_the_hold_is_placed(make_drop, login, redis, stripe_sdk, localstripe):
    # Given a shopper whose card asks for 3-D Secure, in line
    drop = make_drop()
    client = login()
    authorize(client, drop, three_d_secure_method(stripe_sdk))
    queued(drop, client)

    # When the hold is placed
    place(drop)

    # Then the shopper is asked to act, and the page gets the client secret
    assert client.get(f"/api/drops/{drop.slug}/queue").json()["status"] == "payment_required"
    body = client.get(f"/api/drops/{drop.slug}/authorization").json()
    authorization = Authorization.objects.get(drop=drop)
    assert body["status"] == "requires_action"
    assert body["client_secret"].startswith(f"{authorization.payment_intent_id}_secret_")
    assert hold_state(redis, drop, client).endswith(":authentication_required")

    # When 3-D Secure passes in the browser and the page reads the card again
    finish_three_d_secure(localstripe, authorization.payment_intent_id, body["client_secret"])
    current = client.get(f"/api/drops/{drop.slug}/authorization").json()

    # Then the hold counts at once: the shopper can be admitted
    assert (current["status"], current["card"], current["client_secret"]) == (
        "authorized",
        {"brand": "visa", "last4": "3155"},
        None,
    )
    assert hold_state(redis, drop, client) == "r"


def test_failed_three_d_secure_fails_the_hold(make_drop, login, stripe_sdk, localstripe):
    drop = make_drop()
    client = login()
    authorize(client, drop, three_d_secure_method(stripe_sdk))
    queued(drop, client)
    place(drop)
    body = client.get(f"/api/drops/{drop.slug}/authorization").json()
    authorization = Authorization.objects.get(drop=drop)

    finish_three_d_secure(localstripe, authorization.payment_intent_id, body["client_secret"], success=False)

    assert client.get(f"/api/drops/{drop.slug}/authorization").json()["status"] == "failed"
    authorization.refresh_from_db()
    assert (authorization.status, authorization.failure_code) == ("failed", "authentication_failed")
    assert client.get(f"/api/drops/{drop.slug}/queue").json()["status"] == "payment_required"


@pytest.mark.parametrize(
    ("drop_kwargs", "code"),
    [
        ({"ends_at": timezone.now() - timedelta(seconds=1)}, "drop_closed"),
        (
            {
                "prequeue_opens_at": timezone.now() + timedelta(hours=1),
                "starts_at": timezone.now() + timedelta(hours=2),
            },
            "drop_not_open",
        ),
    ],
)
def test_a_closed_or_unopened_drop_refuses_with_409(make_drop, login, drop_kwargs, code):
    drop = make_drop(**drop_kwargs)
    client = login()

    response = authorize(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (409, code)
    assert Authorization.objects.count() == 0


def test_a_sold_out_drop_refuses_with_409(make_drop, login, shopper):
    drop = make_drop(quantity=1)
    claim = inventory_services.unit_claim(drop=drop, shopper_id=shopper.pk)
    inventory_services.order_mark_paid(order=inventory_services.order_reserve(claim=claim, shopper=shopper))
    client = login()

    response = authorize(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (409, "drop_closed")
    assert Authorization.objects.count() == 0


def test_the_prequeue_may_give_a_card(make_drop, login):
    drop = make_drop(
        prequeue_opens_at=timezone.now() - timedelta(minutes=1), starts_at=timezone.now() + timedelta(hours=1)
    )

    assert authorize(login(), drop).status_code == 202


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ({}, "'payment_method' is required"),
        ({"payment_method": 42}, "type str"),
        ({"payment_method": "tok_visa"}, "pm_"),
        ({"payment_method": "pm_card_visa'; DROP"}, "pm_"),
    ],
)
def test_bad_input_is_400_and_changes_nothing(make_drop, login, redis, body, message_part):
    drop = make_drop()
    client = login()

    response = post_json(client, f"/api/drops/{drop.slug}/authorization", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert message_part in error["message"]
    assert Authorization.objects.count() == 0
    assert redis.hlen(queue_keys(drop.pk).holds) == 0


def test_a_card_stripe_does_not_know_asks_for_another_when_its_hold_is_placed(make_drop, login, redis):
    # Given a card id Stripe does not know (made under another account, or lost by a test server's restart)
    drop = make_drop()
    client = login()
    assert authorize(client, drop, "pm_does_not_exist").status_code == 202
    queued(drop, client)

    # When its hold is placed
    place(drop)

    # Then the shopper is asked for another card, and nothing else changed
    entry = client.get(f"/api/drops/{drop.slug}/queue").json()
    assert (entry["status"], entry["decline_code"]) == ("payment_required", "payment_method_unknown")


def test_signed_out_is_401_and_unknown_drop_is_404(make_drop, login):
    drop = make_drop()

    anonymous = authorize(Client(), drop)
    missing = authorize(login(), drop.__class__(slug="nope"))

    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "not_authenticated")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert Authorization.objects.count() == 0


def test_get_without_an_authorization_is_404(make_drop, login):
    drop = make_drop()

    response = login().get(f"/api/drops/{drop.slug}/authorization")

    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_csrf_is_enforced_on_post(make_drop, login):
    drop = make_drop()
    client = login(enforce_csrf_checks=True)

    refused = authorize(client, drop)

    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf_failed")
    assert Authorization.objects.count() == 0
    token = "a" * 32
    client.cookies["csrftoken"] = token
    accepted = post_json(
        client, f"/api/drops/{drop.slug}/authorization", {"payment_method": "pm_card_visa"}, HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 202
