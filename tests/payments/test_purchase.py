"""POST /api/drops/{slug}/purchase and GET /api/orders: admitted shoppers buy with their card hold."""

import pytest
from django.test import Client

from inventory import selectors as inventory_selectors
from inventory.models import Order
from payments.models import Authorization
from payments.selectors import order_public
from tests.payments.conftest import admit, authorize, post_json
from waitingroom import selectors as waitingroom_selectors
from waitingroom import services as waitingroom_services
from waitingroom.selectors import EntryStatus

pytestmark = pytest.mark.django_db(transaction=True)


def buy(client, drop, data=None, **extra):
    return post_json(client, f"/api/drops/{drop.slug}/purchase", data, **extra)


def stock(drop):
    snapshot = inventory_selectors.stock_get(drop=drop)
    return snapshot.redis, snapshot.held, snapshot.database, snapshot.sold


@pytest.fixture
def admitted(make_drop, login):
    """Return (drop, client) for a shopper whose card is held and who has been admitted."""

    def make(**drop_kwargs):
        drop = drop_kwargs.pop("drop", None) or make_drop(**drop_kwargs)
        client = login()
        assert authorize(client, drop).status_code == 202
        admit(drop, client.shopper.pk)
        return drop, client

    return make


def test_an_admitted_shopper_buys_in_one_click(admitted, redis, stripe_sdk):
    drop, client = admitted(quantity=3, per_customer_limit=2)

    response = buy(client, drop, {"quantity": 2})

    assert response.status_code == 201
    order = Order.objects.get(drop=drop)
    assert response.json() == {
        "order": {
            "id": order.pk,
            "drop": drop.slug,
            "status": "paid",
            "quantity": 2,
            "amount": "258.00",
            "currency": "usd",
            "created_at": order.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    authorization = Authorization.objects.get(drop=drop)
    assert (authorization.status, str(authorization.amount_captured)) == ("captured", "258.00")
    intent = stripe_sdk.v1.payment_intents.retrieve(authorization.payment_intent_id)
    assert intent.status == "succeeded"
    assert (intent.latest_charge.captured, intent.latest_charge.amount) == (True, 25800)
    assert stock(drop) == (1, 0, 1, 2)
    entry = waitingroom_selectors.entry_get(drop=drop, shopper_id=client.shopper.pk)
    assert entry.status is EntryStatus.PURCHASED


def test_a_partial_purchase_captures_only_what_was_bought(admitted, stripe_sdk):
    drop, client = admitted(per_customer_limit=3)

    assert buy(client, drop).status_code == 201

    intent = stripe_sdk.v1.payment_intents.retrieve(Authorization.objects.get(drop=drop).payment_intent_id)
    assert intent.amount == 38700
    assert intent.latest_charge.amount_refunded == 38700 - 12900  # the rest of the hold is released


def test_the_same_purchase_again_returns_the_same_order(admitted):
    drop, client = admitted()
    first = buy(client, drop, HTTP_IDEMPOTENCY_KEY="click-1")

    again = buy(client, drop)
    same_key = buy(client, drop, HTTP_IDEMPOTENCY_KEY="click-1")

    assert (first.status_code, again.status_code, same_key.status_code) == (201, 200, 200)
    assert again.json() == first.json() == same_key.json()
    assert Order.objects.filter(drop=drop).count() == 1
    assert Order.objects.get(drop=drop).idempotency_key == "click-1"


def test_a_shopper_not_yet_admitted_is_refused_and_nothing_changes(make_drop, login):
    drop = make_drop()
    client = login()
    authorize(client, drop)
    waitingroom_services.ticket_issue(drop=drop, shopper_id=client.shopper.pk)  # queued, not admitted
    before = stock(drop)

    response = buy(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "not_admitted")
    assert stock(drop) == before
    assert Order.objects.count() == 0
    assert Authorization.objects.get(drop=drop).status == "scheduled"  # its hold is placed when the turn comes near


def test_an_expired_admission_is_410(admitted, redis):
    drop, client = admitted(checkout_window=10)
    now = redis.time()
    waitingroom_services.queue_admit_batch(drop=drop, now_ms=now[0] * 1000 + 60_000, publish=False)

    response = buy(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (410, "admission_expired")
    assert Order.objects.count() == 0


def test_a_failed_capture_returns_the_unit_and_the_next_shopper_buys_it(make_drop, login, stripe_sdk):
    drop = make_drop(quantity=1, admitted_cap_multiple=2, max_accounts_per_card=10)
    first, second = login(), login()
    authorize(first, drop)
    authorize(second, drop)
    admit(drop, first.shopper.pk, second.shopper.pk)
    # The first hold vanished at Stripe (canceled there), so its capture is refused.
    stripe_sdk.v1.payment_intents.cancel(Authorization.objects.get(shopper=first.shopper).payment_intent_id)

    failed = buy(first, drop)

    assert (failed.status_code, failed.json()["error"]["code"]) == (402, "payment_failed")
    order = Order.objects.get(shopper=first.shopper)
    assert (order.status, order.failure_code) == ("failed", "payment_failed")
    assert stock(drop) == (1, 0, 1, 0)  # the unit is back on sale at once
    assert Authorization.objects.get(shopper=first.shopper).status == "failed"
    # Clicking again gets the same failed purchase, not a second capture of a dead hold.
    again = buy(first, drop)
    assert (again.status_code, again.json()["order"]) == (200, order_public(order))

    bought = buy(second, drop)

    assert bought.status_code == 201
    assert bought.json()["order"]["status"] == "paid"
    assert stock(drop) == (0, 0, 0, 1)


def test_the_per_customer_limit_is_409_and_changes_nothing(admitted):
    drop, client = admitted(per_customer_limit=2)
    before = stock(drop)

    response = buy(client, drop, {"quantity": 3})

    assert (response.status_code, response.json()["error"]["code"]) == (409, "limit_reached")
    assert stock(drop) == before
    assert Order.objects.count() == 0


@pytest.mark.parametrize("body", ["{oops", {"quantity": "2"}, {"quantity": 0}, {"quantity": True}])
def test_bad_purchase_input_is_400_and_changes_nothing(admitted, body):
    drop, client = admitted()
    before = stock(drop)

    response = buy(client, drop, body)

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request")
    assert stock(drop) == before
    assert Order.objects.count() == 0
    assert Authorization.objects.get(drop=drop).status == "authorized"


def test_without_a_card_hold_the_purchase_is_402(make_drop, login):
    drop = make_drop()
    client = login()
    waitingroom_services.queue_start(drop=drop)
    waitingroom_services.ticket_issue(drop=drop, shopper_id=client.shopper.pk, require_authorization=False)
    admit(drop)

    response = buy(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (402, "authorization_required")
    assert stock(drop)[0] == 10


def test_signed_out_purchase_is_401(make_drop):
    response = buy(Client(), make_drop())

    assert (response.status_code, response.json()["error"]["code"]) == (401, "not_authenticated")


def test_orders_lists_the_shoppers_own_newest_first(admitted, make_drop, login):
    drop_a, client = admitted()
    buy(client, drop_a)
    drop_b = make_drop()
    authorize(client, drop_b)
    admit(drop_b, client.shopper.pk)
    buy(client, drop_b)
    other_drop, other = admitted()
    buy(other, other_drop)

    response = client.get("/api/orders")

    assert response.status_code == 200
    assert [(o["drop"], o["status"]) for o in response.json()["orders"]] == [
        (drop_b.slug, "paid"),
        (drop_a.slug, "paid"),
    ]
    assert Client().get("/api/orders").status_code == 401


def test_purchases_and_holds_are_rate_limited_per_shopper(admitted, settings):
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "purchase": [("shopper", "2/m")],
        "authorization": [("shopper", "1/m")],
    }
    drop, client = admitted(quantity=3)
    assert buy(client, drop).status_code == 201
    assert buy(client, drop).status_code == 200  # the same purchase again
    limited = buy(client, drop)
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert authorize(client, drop).status_code == 429  # the fixture's hold used the one allowed
    assert Order.objects.filter(drop=drop).count() == 1


def test_a_purchase_after_the_sell_out_is_told_sold_out_not_to_give_a_card(make_drop, login):
    # Given two admitted shoppers and one unit; the first buys it, which releases the second's hold
    drop = make_drop(quantity=1, admitted_cap_multiple=2, max_accounts_per_card=10)
    first, late = login(), login()
    for client in (first, late):
        authorize(client, drop)
    admit(drop, first.shopper.pk, late.shopper.pk)
    assert buy(first, drop).status_code == 201
    assert Authorization.objects.get(shopper=late.shopper).status == "canceled"

    # When the second presses Buy
    response = buy(late, drop)

    # Then they are told it sold out (their hold was released because of that), and nothing changes
    assert (response.status_code, response.json()["error"]["code"]) == (409, "sold_out")
    assert Order.objects.filter(drop=drop).count() == 1


def test_an_admission_that_expires_during_a_purchase_keeps_the_hold_the_capture_needs(make_drop, login, stripe_sdk):
    from flashsale.checkout import tasks as checkout_tasks
    from inventory import services as inventory_services
    from payments.services import purchase_lock_key

    # Given two admitted shoppers whose windows ended: one is mid-purchase (a pending order), the other's
    # purchase lock is held (the request is between its checks)
    drop = make_drop(quantity=5, max_accounts_per_card=10)
    paying, locked, idle = login(), login(), login()
    for client in (paying, locked, idle):
        authorize(client, drop)
    admit(drop, paying.shopper.pk, locked.shopper.pk, idle.shopper.pk)
    claim = inventory_services.unit_claim(drop=drop, shopper_id=paying.shopper.pk)
    inventory_services.order_reserve(claim=claim, shopper=paying.shopper)
    from flashsale.redis import redis_client

    redis_client().set(purchase_lock_key(drop.pk, locked.shopper.pk), "token", ex=60)

    # When their admissions' release runs
    checkout_tasks.admissions_expired_release.delay(drop.pk, [paying.shopper.pk, locked.shopper.pk, idle.shopper.pk])

    # Then only the idle shopper's hold is canceled
    status = dict(Authorization.objects.filter(drop=drop).values_list("shopper_id", "status"))
    assert (status[paying.shopper.pk], status[locked.shopper.pk], status[idle.shopper.pk]) == (
        "authorized",
        "authorized",
        "canceled",
    )
