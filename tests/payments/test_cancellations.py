"""Cancelling holds nobody will capture: after a sell-out, at the allowed rate, expired admissions, deadlines."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from flashsale.checkout import services as checkout_services
from payments import services, tasks
from payments.models import Authorization
from tests.payments.conftest import admit, authorize, hold, post_json
from tests.payments.test_authorization import intents_of
from tests.payments.test_ratelimit import grants_per_window

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_sell_out_releases_every_losers_card_and_holds_only_what_could_sell(
    make_drop, login, stripe_sdk, localstripe
):
    # Given one unit, a cap of one admitted shopper per free unit, and six shoppers who gave their cards
    drop = make_drop(quantity=1, admitted_cap_multiple=1, max_accounts_per_card=10)
    before = {pi["id"] for pi in intents_of(localstripe, drop)}
    shoppers = [login() for _ in range(6)]
    for client in shoppers:
        assert authorize(client, drop).status_code == 202
    winner, *losers = shoppers
    admit(drop, *(client.shopper.pk for client in shoppers))

    # When the last unit sells (its commit starts the release of every other card: a task, here in-process)
    assert post_json(winner, f"/api/drops/{drop.slug}/purchase").status_code == 201

    # Then one hold was ever placed, the winner's, and captured; the losers' cards were let go with no
    # Stripe call (their holds were never placed: the cap let only one shopper near)
    cards = {a.shopper_id: a for a in Authorization.objects.filter(drop=drop)}
    assert cards[winner.shopper.pk].status == "captured"
    for client in losers:
        card = cards[client.shopper.pk]
        assert (card.status, card.cancellation_reason, card.payment_intent_id) == ("canceled", "released", None)
    assert [pi["id"] for pi in intents_of(localstripe, drop, since=before)] == [
        cards[winner.shopper.pk].payment_intent_id
    ]
    assert stripe_sdk.v1.payment_intents.retrieve(cards[winner.shopper.pk].payment_intent_id).status == "succeeded"
    # Running the pipeline again changes nothing.
    assert tasks.drop_authorizations_release.apply(args=(drop.pk,)).get() == 0


def test_a_sell_out_cancels_placed_holds_at_stripe(make_drop, login, stripe_sdk):
    # Given three shoppers whose holds were placed, one of them admitted
    drop = make_drop(quantity=1, max_accounts_per_card=10)
    winner, *losers = [login() for _ in range(3)]
    for client in (winner, *losers):
        hold(client, drop)
    admit(drop, winner.shopper.pk)

    # When the unit sells
    assert post_json(winner, f"/api/drops/{drop.slug}/purchase").status_code == 201

    # Then the placed holds of the others are canceled at Stripe
    for client in losers:
        held = Authorization.objects.get(drop=drop, shopper=client.shopper)
        assert (held.status, held.cancellation_reason) == ("canceled", "abandoned")
        assert stripe_sdk.v1.payment_intents.retrieve(held.payment_intent_id).status == "canceled"


def test_the_cancellation_pipeline_keeps_to_the_rate(make_drop, login, settings, stripe_sdk):
    drop = make_drop(quantity=1)
    for _ in range(24):
        hold(login(), drop)
    settings.STRIPE_RATE_LIMIT, settings.STRIPE_RATE_BURST = 10, 3
    started = time.monotonic()

    # Drive the pipeline the way the task chain does: run, then continue after the wait it names.
    canceled, runs = 0, 0
    while True:
        batch = services.drop_authorizations_cancel(drop_id=drop.pk, budget_seconds=5)
        canceled, runs = canceled + batch.canceled, runs + 1
        if not batch.more:
            break
        time.sleep(batch.wait_ms / 1000)
    elapsed = time.monotonic() - started

    assert canceled == 24
    stamps = [a.updated_at.timestamp() for a in Authorization.objects.filter(drop=drop)]
    assert grants_per_window(stamps) <= 10
    # Background work may use 2 of the 3 burst tokens, then 7 a second: (24 - 2) / 7 s at the least.
    assert elapsed >= 22 / 7 - 0.1
    statuses = {stripe_sdk.v1.payment_intents.retrieve(a.payment_intent_id).status for a in Authorization.objects.all()}
    assert statuses == {"canceled"}


def test_an_unfinished_drop_keeps_its_holds(make_drop, login):
    drop = make_drop(quantity=2)
    hold(login(), drop)

    assert services.drops_with_releasable_holds() == []
    assert tasks.drop_authorizations_release.apply(args=(drop.pk,)).get() == 0
    assert Authorization.objects.get().status == "authorized"


def test_an_ended_drop_releases_its_holds_through_the_beat_task(make_drop, login, stripe_sdk):
    drop = make_drop()
    hold(login(), drop)
    drop.ends_at = timezone.now() - timedelta(seconds=1)
    drop.save(update_fields=["ends_at"])

    assert tasks.authorizations_cancel_due.apply().get() == {"drops": 1, "near_deadline": 0}

    held = Authorization.objects.get()
    assert held.status == "canceled"
    assert stripe_sdk.v1.payment_intents.retrieve(held.payment_intent_id).status == "canceled"


def test_holds_near_their_capture_deadline_are_canceled_before_it(make_drop, login, settings):
    drop = make_drop()
    old, fresh = login(), login()
    hold(old, drop)
    hold(fresh, drop)
    Authorization.objects.filter(shopper=old.shopper).update(capture_before=timezone.now() + timedelta(hours=11))

    assert tasks.authorizations_cancel_due.apply().get() == {"drops": 0, "near_deadline": 1}

    assert Authorization.objects.get(shopper=old.shopper).status == "canceled"
    assert Authorization.objects.get(shopper=fresh.shopper).status == "authorized"


def test_an_expired_admission_cancels_that_shoppers_hold(make_drop, login, redis, stripe_sdk):
    drop = make_drop()
    client = login()
    hold(client, drop)
    other = login()
    hold(other, drop)

    assert services.authorization_cancel_for_shopper(drop_id=drop.pk, shopper_id=client.shopper.pk)

    held = Authorization.objects.get(shopper=client.shopper)
    assert held.status == "canceled"
    assert stripe_sdk.v1.payment_intents.retrieve(held.payment_intent_id).status == "canceled"
    assert Authorization.objects.get(shopper=other.shopper).status == "authorized"
    # Again: nothing left to cancel.
    assert not services.authorization_cancel_for_shopper(drop_id=drop.pk, shopper_id=client.shopper.pk)


def test_one_tick_that_expires_many_admissions_cancels_all_their_holds(make_drop, login, stripe_sdk, monkeypatch):
    # Given four shoppers with holds, three admitted (releases go out in batches of two here)
    monkeypatch.setattr(checkout_services, "EXPIRED_RELEASE_BATCH", 2)
    drop = make_drop()
    clients = [login() for _ in range(4)]
    for client in clients:
        hold(client, drop)
    admitted = [client.shopper.pk for client in clients[:3]]
    admit(drop, *admitted)

    # When one tick finds all three checkout windows closed
    checkout_services.drops_tick_all(now_ms=int(time.time() * 1000) + (drop.checkout_window + 5) * 1000)

    # Then the three holds are canceled at Stripe and the fourth shopper's hold stays
    for shopper_id in admitted:
        held = Authorization.objects.get(shopper_id=shopper_id)
        assert held.status == "canceled"
        assert stripe_sdk.v1.payment_intents.retrieve(held.payment_intent_id).status == "canceled"
    assert Authorization.objects.get(shopper=clients[3].shopper).status == "authorized"


def test_a_hold_captured_elsewhere_is_brought_in_step_not_canceled(make_drop, login, stripe_sdk):
    drop = make_drop()
    hold(login(), drop)
    held = Authorization.objects.get()
    stripe_sdk.v1.payment_intents.capture(held.payment_intent_id)

    assert services.authorization_cancel(authorization_id=held.pk) is False

    held.refresh_from_db()
    assert held.status == "captured"
