"""The queue is saved off the join path in batches and rebuilt when Redis loses it."""

import time

import pytest

from flashsale.checkout.services import drop_recover_if_lost, queue_save_all
from inventory import selectors as inventory_selectors
from inventory import services as inventory_services
from inventory.redis_keys import drop_tag
from payments.models import Authorization, AuthorizationStatus
from tests.factories import DropFactory, UserFactory
from waitingroom import persistence, selectors, services
from waitingroom.errors import AuthorizationRequired
from waitingroom.models import QueueEntry, QueueSnapshot
from waitingroom.redis_keys import queue_keys
from waitingroom.selectors import EntryStatus

pytestmark = pytest.mark.django_db


def join(drop, user):
    return services.ticket_issue(drop=drop, shopper_id=user.pk, require_authorization=False)[0]


def card_held(drop, user, status=AuthorizationStatus.AUTHORIZED):
    """The shopper's authorization in the database, as the checkout leaves it once the hold is placed."""
    return Authorization.objects.create(
        drop=drop, shopper=user, status=status, amount=drop.product.price, currency="usd",
        payment_intent_id=f"pi_{drop.pk}_{user.pk}", card_fingerprint=f"fp{user.pk}",
    )  # fmt: skip


def lose_redis(redis, drop):
    """What a Redis restart without persistence does to a drop: every key gone."""
    redis.delete(*redis.scan_iter(match=f"{drop_tag(drop.pk)}:*"))


def test_entries_are_saved_in_batches_off_the_join_path(redis, django_assert_num_queries):
    drop = DropFactory(quantity=5)
    inventory_services.drop_arm(drop=drop)
    early, later = UserFactory(), UserFactory()
    with django_assert_num_queries(0):
        join(drop, early)  # the join itself writes only to Redis
    assert redis.llen(queue_keys(drop.pk).journal) == 1
    services.queue_start(drop=drop)
    join(drop, later)
    assert persistence.queue_persist(drop=drop) == 3  # pre-queued, then ticket 1 at the start, then ticket 2
    saved = dict(QueueEntry.objects.filter(drop=drop).values_list("shopper_id", "ticket"))
    assert saved == {early.pk: 1, later.pk: 2}
    assert redis.llen(queue_keys(drop.pk).journal) == 0
    snapshot = QueueSnapshot.objects.get(drop=drop)
    assert (snapshot.started, snapshot.last_ticket, snapshot.serving) == (True, 2, 0)


def test_one_saver_at_a_time(redis):
    drop = DropFactory()
    inventory_services.drop_arm(drop=drop)
    join(drop, UserFactory())
    redis.set(queue_keys(drop.pk).persist_lock, "another-process")
    assert persistence.queue_persist(drop=drop) == 0
    assert redis.llen(queue_keys(drop.pk).journal) == 1


def test_a_lost_queue_and_stock_are_rebuilt_from_the_database(redis):
    drop = DropFactory(quantity=3, admission_rate=1, checkout_window=600)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    buyer, admitted, waiting, unsaved = (UserFactory() for _ in range(4))
    for user in (buyer, admitted, waiting):
        card_held(drop, user)
        join(drop, user)
    now = int(time.time() * 1000)
    services.queue_admit_batch(drop=drop, now_ms=now, publish=False)
    services.queue_admit_batch(drop=drop, now_ms=now + 2000, publish=False)  # tickets 1 and 2 admitted
    claim = inventory_services.unit_claim(drop=drop, shopper_id=buyer.pk)
    inventory_services.order_mark_paid(order=inventory_services.order_reserve(claim=claim, shopper=buyer))
    services.admission_complete(drop=drop, shopper_id=buyer.pk)
    persistence.queue_persist(drop=drop)
    join(drop, unsaved)  # joined in the last second before the crash: not saved yet

    lose_redis(redis, drop)
    assert drop_recover_if_lost(drop=drop) is True
    assert drop_recover_if_lost(drop=drop) is False  # once

    status = {u: selectors.entry_get(drop=drop, shopper_id=u.pk) for u in (buyer, admitted, waiting, unsaved)}
    assert status[buyer].status is EntryStatus.PURCHASED
    assert (status[admitted].status, status[admitted].ticket) == (EntryStatus.ADMITTED, 2)
    assert (status[waiting].status, status[waiting].ticket, status[waiting].position) == (EntryStatus.WAITING, 3, 1)
    assert status[unsaved] is None  # told it is not in the queue: it joins again
    stock = inventory_selectors.stock_get(drop=drop)
    assert (stock.redis, stock.redis_sold) == (2, 1)
    again, created = services.ticket_issue(drop=drop, shopper_id=unsaved.pk, require_authorization=False)
    assert (created, again.ticket) == (True, 4)
    services.queue_admit_batch(drop=drop, now_ms=now + 10_000, publish=False)  # the clock starts again
    services.queue_admit_batch(drop=drop, now_ms=now + 11_000, publish=False)
    assert selectors.entry_get(drop=drop, shopper_id=waiting.pk).status is EntryStatus.ADMITTED


def test_save_all_saves_open_drops_and_recovers_lost_ones(redis):
    kept, lost = DropFactory(slug="kept"), DropFactory(slug="lost")
    for drop in (kept, lost):
        inventory_services.drop_arm(drop=drop)
        join(drop, UserFactory())
    persistence.queue_persist(drop=lost)
    lose_redis(redis, lost)
    assert queue_save_all() == {"kept": 1, "lost": -1}
    assert inventory_selectors.stock_get(drop=lost).redis == lost.quantity
    assert redis.hlen(queue_keys(lost.pk).entries) == 1


def test_card_holds_are_rebuilt_with_the_drop(redis):
    """After Redis lost a drop, shoppers who held their card before can still join (the join reads holds)."""
    drop = DropFactory(quantity=3)
    inventory_services.drop_arm(drop=drop)
    held, canceled = UserFactory(), UserFactory()
    for user, status in ((held, AuthorizationStatus.AUTHORIZED), (canceled, AuthorizationStatus.CANCELED)):
        card_held(drop, user, status)
    lose_redis(redis, drop)
    assert drop_recover_if_lost(drop=drop) is True
    assert redis.hgetall(queue_keys(drop.pk).holds) == {str(held.pk).encode(): b"r"}
    _entry, created = services.ticket_issue(drop=drop, shopper_id=held.pk)  # the card check is on
    assert created
    with pytest.raises(AuthorizationRequired):
        services.ticket_issue(drop=drop, shopper_id=canceled.pk)


def test_a_rebuild_tells_the_shoppers_whose_admission_it_restored(redis):
    import json

    from flashsale.redis import pubsub_client
    from waitingroom.redis_keys import updates_channel

    # Given an admitted shopper whose admission was saved, then Redis lost
    drop = DropFactory(quantity=5)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    user = UserFactory()
    join(drop, user)
    now = int(time.time() * 1000)
    services.queue_admit_batch(drop=drop, now_ms=now, publish=False)
    assert services.queue_admit_batch(drop=drop, now_ms=now + 1000, publish=False).admitted == [user.pk]
    persistence.queue_persist(drop=drop)
    lose_redis(redis, drop)
    listener = pubsub_client().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(updates_channel(drop.pk))

    # When the drop is rebuilt
    assert drop_recover_if_lost(drop=drop)

    # Then the shopper is told the admission again (no tick announces a restored one)
    told = {}
    deadline = time.monotonic() + 5
    while not told and time.monotonic() < deadline:
        message = listener.get_message(timeout=1)
        if message:
            told.update({int(k): json.loads(v) for k, v in json.loads(message["data"])["entries"].items()})
    listener.close()
    assert told[user.pk]["status"] == "admitted"
