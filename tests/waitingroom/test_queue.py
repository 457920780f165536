"""The queue's services against a real Redis: pre-queue draw, FIFO, rate, exactly-once, cap, expiry."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from flashsale.redis import pubsub_client
from inventory import services as inventory_services
from tests.factories import DropFactory
from waitingroom import selectors, services
from waitingroom.errors import AdmissionExpired, DropNotOpen, NotAdmitted, QueueSoldOut
from waitingroom.redis_keys import queue_keys, updates_channel
from waitingroom.scripts import StartResult
from waitingroom.selectors import EntryStatus

pytestmark = pytest.mark.django_db


def armed(**kwargs):
    drop = DropFactory(**kwargs)
    inventory_services.drop_arm(drop=drop)
    return drop


def join(drop, shopper_id):
    entry, _ = services.ticket_issue(drop=drop, shopper_id=shopper_id, require_authorization=False)
    return entry


def test_prequeue_is_drawn_into_distinct_tickets_not_in_arrival_order(redis):
    drop = armed(starts_at=timezone.now() + timedelta(minutes=5))
    shoppers = list(range(1, 201))
    for shopper in shoppers:
        assert join(drop, shopper).status is EntryStatus.PREQUEUE
    assert join(drop, 5).ticket is None  # joining again returns the same pre-queue entry
    drop.starts_at = timezone.now() - timedelta(seconds=1)
    assert services.queue_start(drop=drop) is StartResult.STARTED
    assert services.queue_start(drop=drop) is StartResult.ALREADY_STARTED
    tickets = {s: selectors.entry_get(drop=drop, shopper_id=s).ticket for s in shoppers}
    assert sorted(tickets.values()) == list(range(1, 201))
    assert [tickets[s] for s in shoppers] != list(range(1, 201))  # 1 in 200! odds of a false failure
    assert redis.llen(queue_keys(drop.pk).prequeue) == 0


def test_after_the_start_tickets_are_first_come_first_served():
    drop = armed()
    services.queue_start(drop=drop)
    assert [join(drop, s).ticket for s in (10, 11, 12)] == [1, 2, 3]
    assert join(drop, 10).ticket == 1


def test_joining_a_closed_drop_is_refused(redis):
    ended = armed(ends_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(DropNotOpen):
        join(ended, 1)
    scheduled = armed(
        prequeue_opens_at=timezone.now() + timedelta(minutes=1), starts_at=timezone.now() + timedelta(minutes=2)
    )
    with pytest.raises(DropNotOpen):
        join(scheduled, 1)
    assert redis.hlen(queue_keys(ended.pk).entries) == 0


def test_joining_a_sold_out_drop_is_refused(redis):
    drop = armed(quantity=1)
    inventory_services.unit_commit(claim=inventory_services.unit_claim(drop=drop, shopper_id=99))
    with pytest.raises(QueueSoldOut):
        join(drop, 1)
    assert redis.hlen(queue_keys(drop.pk).entries) == 0


def test_admission_rate_over_a_simulated_minute_is_within_one_percent():
    drop = armed(quantity=50_000, admission_rate=200, checkout_window=600)
    services.queue_start(drop=drop)
    for shopper in range(1, 14_001):
        join(drop, shopper)
    start = 1_800_000_000_000
    services.queue_admit_batch(drop=drop, now_ms=start, publish=False)
    now, step = start, 0
    while now < start + 60_000:
        step += 1
        now += 1000 + (150 if step % 3 == 0 else -100 if step % 3 == 1 else 0)  # jittery, sometimes late ticks
        if step % 17 == 0:
            continue  # a missed tick
        services.queue_admit_batch(drop=drop, now_ms=min(now, start + 60_000), publish=False)
    serving = selectors.queue_stats_get(drop_id=drop.pk).serving
    assert abs(serving - 12_000) <= 120


def test_two_tickers_at_once_admit_each_shopper_once(redis):
    drop = armed(quantity=10_000, admission_rate=1000)
    services.queue_start(drop=drop)
    for shopper in range(1, 3001):
        join(drop, shopper)
    start = 1_800_000_000_000
    services.queue_admit_batch(drop=drop, now_ms=start, publish=False)
    results = []

    def ticker(offset):
        for i in range(1, 21):
            results.append(services.queue_admit_batch(drop=drop, now_ms=start + i * 100 + offset, publish=False))

    threads = [threading.Thread(target=ticker, args=(o,)) for o in (0, 0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = [s for r in results for s in r.admitted]
    assert len(admitted) == len(set(admitted))
    serving = selectors.queue_stats_get(drop_id=drop.pk).serving
    assert len(admitted) == serving == redis.zcard(queue_keys(drop.pk).admitted)
    assert abs(serving - 2001) <= 2  # 2.001 s at 1,000/s, whichever ticker ran each moment


def test_admitted_shoppers_are_capped_by_free_stock():
    drop = armed(quantity=4, admission_rate=1000, admitted_cap_multiple=3)
    services.queue_start(drop=drop)
    for shopper in range(1, 101):
        join(drop, shopper)
    services.queue_admit_batch(drop=drop, now_ms=1_800_000_000_000, publish=False)
    result = services.queue_admit_batch(drop=drop, now_ms=1_800_000_010_000, publish=False)
    assert (result.serving, result.active) == (12, 12)
    inventory_services.unit_claim(drop=drop, shopper_id=1, quantity=1)  # 3 units free now
    assert services.queue_admit_batch(drop=drop, now_ms=1_800_000_020_000, publish=False).serving == 12


def test_admission_expires_after_the_checkout_window_and_frees_the_cap():
    drop = armed(quantity=1, admission_rate=10, admitted_cap_multiple=1, checkout_window=30)
    services.queue_start(drop=drop)
    join(drop, 1)
    join(drop, 2)
    now = int(time.time() * 1000)
    services.queue_admit_batch(drop=drop, now_ms=now, publish=False)
    first = services.queue_admit_batch(drop=drop, now_ms=now + 1000, publish=False)
    assert first.admitted == [1]
    assert services.admission_check(drop=drop, shopper_id=1).status is EntryStatus.ADMITTED
    with pytest.raises(NotAdmitted):
        services.admission_check(drop=drop, shopper_id=2)
    later = services.queue_admit_batch(drop=drop, now_ms=now + 31_000, publish=False)
    assert (later.expired, later.admitted) == ([1], [2])
    with pytest.raises(AdmissionExpired):
        services.admission_check(drop=drop, shopper_id=1)


def test_position_and_eta_for_a_waiting_shopper():
    drop = armed(admission_rate=10)
    services.queue_start(drop=drop)
    for shopper in range(1, 51):
        join(drop, shopper)
    entry = selectors.entry_get(drop=drop, shopper_id=50)
    assert entry.as_dict() == {
        "status": "waiting",
        "ticket": 50,
        "position": 50,
        "serving": 0,
        "length": 50,
        "eta_seconds": 5,
        "admission_expires_at": None,
        "decline_code": None,
    }


def test_waiting_shoppers_see_sold_out_when_the_last_unit_sells():
    drop = armed(quantity=1)
    services.queue_start(drop=drop)
    join(drop, 1)
    join(drop, 2)
    inventory_services.unit_commit(claim=inventory_services.unit_claim(drop=drop, shopper_id=1))
    assert selectors.entry_get(drop=drop, shopper_id=2).status is EntryStatus.SOLD_OUT
    assert selectors.drop_frame_get(drop=drop)["state"] == "sold_out"


def test_purchase_completes_the_admission():
    drop = armed(quantity=5, admission_rate=10)
    services.queue_start(drop=drop)
    join(drop, 1)
    services.queue_admit_batch(drop=drop, now_ms=1_800_000_000_000, publish=False)
    services.queue_admit_batch(drop=drop, now_ms=1_800_000_001_000, publish=False)
    services.admission_complete(drop=drop, shopper_id=1)
    assert selectors.entry_get(drop=drop, shopper_id=1).status is EntryStatus.PURCHASED
    assert selectors.queue_stats_get(drop_id=drop.pk).admitted == 0


def test_an_ended_drop_is_ticked_for_a_minute_so_watchers_learn_it(redis):
    live = armed(slug="on")
    ended = armed(slug="just-ended", ends_at=timezone.now() - timedelta(seconds=5))
    long_gone = armed(slug="gone", ends_at=timezone.now() - timedelta(minutes=5))
    subscriber = pubsub_client().pubsub(ignore_subscribe_messages=True)  # PUBSUB_URL, not the sale's Redis
    subscriber.subscribe(updates_channel(ended.pk))
    assert set(services.queue_tick_all()) == {live.slug, ended.slug}
    assert long_gone.slug not in services.queue_tick_all()
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=1)  # the subscription's own reply reads as None
    assert json.loads(json.loads(message["data"])["frame"])["state"] == "ended"
    subscriber.close()


def test_the_drop_cache_keeps_no_misses_and_stays_bounded(monkeypatch):
    # Given a process that has read a few real drops and thousands of made-up slugs
    monkeypatch.setattr(selectors, "DROP_CACHE_SIZE", 3)
    selectors.drop_cache_clear()
    real = [armed(slug=f"real-{i}") for i in range(5)]
    for i in range(2_000):
        assert selectors.drop_cached_get(slug=f"made-up-{i}") is None
    for drop in real:
        assert selectors.drop_cached_get(slug=drop.slug).pk == drop.pk

    # Then no miss was kept, and only the three drops read last are
    assert list(selectors._drop_cache) == [drop.slug for drop in real[-3:]]


def test_an_ended_drop_whose_keys_are_gone_answers_not_queued_not_try_again(redis):
    from inventory.redis_keys import drop_tag

    # Given a drop that ended (its keys are never rebuilt) and whose Redis keys are gone
    drop = armed(slug="over", ends_at=timezone.now() - timedelta(hours=2))
    redis.delete(*redis.scan_iter(match=f"{drop_tag(drop.pk)}:*"))

    # Then reading an entry is a final "not in the queue", not a 503 that would never end
    assert selectors.entry_get(drop=drop, shopper_id=1) is None
