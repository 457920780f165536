"""Admissions, tickets and holds belong to one shopper and one drop: none can be forged, replayed or moved.

What tests/waitingroom (test_api, test_bots) already prove is not repeated here: a proof-of-work for another
drop or shopper, a replayed or forged one, a join without a hold, one entry per card.
"""

import json

import pytest
from django.test import Client

from inventory import selectors as inventory_selectors
from inventory.models import Order
from payments.models import Authorization
from tests.payments.conftest import admit, authorize, post_json
from tests.waitingroom.support import authorize as authorize_in_queue
from waitingroom import selectors as waitingroom_selectors
from waitingroom import services as waitingroom_services
from waitingroom.redis_keys import queue_keys

from .conftest import session_for, veteran

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def payments(stripe_settings, eager_tasks, cheap_pow):
    return stripe_settings


def _shopper() -> Client:
    client = Client()
    client.shopper = veteran()
    client.force_login(client.shopper)
    return client


def _buy(client, drop, body=None, **extra):
    return post_json(client, f"/api/drops/{drop.slug}/purchase", body or {}, **extra)


def _nothing_sold(*drops):
    for drop in drops:
        stock = inventory_selectors.stock_get(drop=drop)
        assert (stock.sold, stock.held, stock.remaining) == (0, 0, drop.quantity)
    assert not Order.objects.exists()


def test_an_admission_to_one_drop_buys_nothing_on_another(make_drop):
    first, second = make_drop(slug="first"), make_drop(slug="second")
    shopper = _shopper()
    assert authorize(shopper, first).status_code == 202
    assert authorize(shopper, second).status_code == 202
    admit(first, shopper.shopper.pk)

    response = _buy(shopper, second)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "not_admitted")
    _nothing_sold(first, second)
    entry = waitingroom_selectors.entry_get(drop=first, shopper_id=shopper.shopper.pk)
    assert entry.status.value == "admitted"  # the real admission is untouched


def test_another_shoppers_admission_cannot_be_used_by_naming_them(make_drop):
    drop = make_drop()
    admitted, other = _shopper(), _shopper()
    assert authorize(admitted, drop).status_code == 202
    assert authorize(other, drop).status_code == 202
    admit(drop, admitted.shopper.pk)

    for body in ({"shopper": admitted.shopper.pk}, {"shopper_id": admitted.shopper.pk, "ticket": 1}):
        response = _buy(other, drop, body)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "not_admitted")
    _nothing_sold(drop)
    assert _buy(admitted, drop).status_code == 201  # the admitted shopper still buys


def test_a_hold_is_not_moved_to_another_shopper_or_drop(make_drop):
    held_drop, other_drop = make_drop(slug="held"), make_drop(slug="other")
    holder, admitted_without_hold = _shopper(), _shopper()
    assert authorize(holder, held_drop).status_code == 202
    # Both are admitted to the other drop without a hold there (a ticket forced past the join's check).
    waitingroom_services.queue_start(drop=other_drop)
    for client in (holder, admitted_without_hold):
        waitingroom_services.ticket_issue(drop=other_drop, shopper_id=client.shopper.pk, require_authorization=False)
    admit(other_drop)

    for client in (holder, admitted_without_hold):
        response = _buy(client, other_drop)
        assert (response.status_code, response.json()["error"]["code"]) == (402, "authorization_required")
    _nothing_sold(held_drop, other_drop)
    assert Authorization.objects.get(drop=held_drop).status == "scheduled"  # still only the holder's, on its drop


def test_an_idempotency_key_replays_only_its_own_shoppers_order(make_drop):
    drop = make_drop(quantity=2)
    first, second = _shopper(), _shopper()
    for client in (first, second):
        assert authorize(client, drop).status_code == 202
    admit(drop, first.shopper.pk, second.shopper.pk)
    mine = _buy(first, drop, HTTP_IDEMPOTENCY_KEY="k-1")
    assert mine.status_code == 201

    theirs = _buy(second, drop, HTTP_IDEMPOTENCY_KEY="k-1")  # the same key, another shopper

    assert theirs.status_code == 201
    assert theirs.json()["order"]["id"] != mine.json()["order"]["id"]
    assert _buy(first, drop, HTTP_IDEMPOTENCY_KEY="k-1").json() == mine.json()  # a replay is the same order
    assert Order.objects.filter(drop=drop).count() == 2
    assert first.get("/api/orders").json()["orders"] == [mine.json()["order"]]


def test_a_purchase_replayed_after_it_succeeded_takes_no_second_unit(make_drop):
    drop = make_drop(quantity=3, per_customer_limit=2)
    shopper = _shopper()
    assert authorize(shopper, drop).status_code == 202
    admit(drop, shopper.shopper.pk)
    first = _buy(shopper, drop)

    again = [_buy(shopper, drop, {"quantity": 2}, HTTP_IDEMPOTENCY_KEY=f"other-{i}") for i in range(3)]

    assert first.status_code == 201
    assert {(r.status_code, r.json()["order"]["id"]) for r in again} == {(200, first.json()["order"]["id"])}
    assert inventory_selectors.stock_get(drop=drop).sold == 1


def test_a_queue_entry_belongs_to_the_session_not_to_what_the_body_says(make_drop, redis):
    from tests.waitingroom.support import join_body

    drop = make_drop(slug="air")
    owner, intruder = _shopper(), _shopper()
    for client in (owner, intruder):
        authorize_in_queue(redis, drop, client.shopper)
    waitingroom_services.queue_start(drop=drop)
    assert post_json(owner, "/api/drops/air/queue", join_body(owner)).status_code == 201

    body = join_body(intruder, ticket=1, shopper=owner.shopper.pk, shopper_id=owner.shopper.pk, position=0)
    joined = post_json(intruder, "/api/drops/air/queue", body)

    assert (joined.status_code, joined.json()["ticket"]) == (201, 2)
    assert owner.get("/api/drops/air/queue").json()["ticket"] == 1
    assert redis.hlen(queue_keys(drop.pk).entries) == 2


def test_a_made_up_or_signed_out_session_gets_nothing(make_drop):
    drop = make_drop()
    shopper = _shopper()
    assert authorize(shopper, drop).status_code == 202
    admit(drop, shopper.shopper.pk)
    stale = shopper.cookies["sessionid"].value
    assert shopper.delete("/api/session").status_code == 204

    real = session_for(shopper.shopper)
    forged = real[:-1] + ("y" if real.endswith("x") else "x")  # one character off (never the real key itself)
    for session in (stale, "0" * 32, forged):
        client = Client()
        client.cookies["sessionid"] = session
        for method, path in (("POST", "purchase"), ("GET", "queue"), ("GET", "authorization")):
            response = client.generic(method, f"/api/drops/{drop.slug}/{path}", "{}", content_type="application/json")
            assert (response.status_code, response.json()["error"]["code"]) == (401, "not_authenticated"), path
    _nothing_sold(drop)


def test_a_session_is_invalidated_by_a_password_change_for_holds_and_purchases(make_drop):
    drop = make_drop()
    shopper = _shopper()
    assert authorize(shopper, drop).status_code == 202
    admit(drop, shopper.shopper.pk)
    shopper.shopper.set_password("a new long password 1")
    shopper.shopper.save()

    assert _buy(shopper, drop).status_code == 401
    assert shopper.get(f"/api/drops/{drop.slug}/authorization").status_code == 401
    _nothing_sold(drop)


def test_a_ticket_cannot_be_bought_twice_through_two_sessions(make_drop):
    drop = make_drop(quantity=5, per_customer_limit=1)
    shopper = _shopper()
    assert authorize(shopper, drop).status_code == 202
    admit(drop, shopper.shopper.pk)
    second_device = Client()
    second_device.force_login(shopper.shopper)

    responses = [_buy(shopper, drop), _buy(second_device, drop, {"quantity": 1}, HTTP_IDEMPOTENCY_KEY="x")]

    assert [r.status_code for r in responses] == [201, 200]
    assert inventory_selectors.stock_get(drop=drop).sold == 1
    assert json.loads(responses[0].content) == json.loads(responses[1].content)
