"""Services that save the queue to the database off the join path, and rebuild it after Redis lost it.

The join, start and release scripts append ``shopper:ticket`` to a per-drop journal in the
same atomic call; a Celery task drains the journal into ``QueueEntry`` rows in batches,
once a second, and saves the counters and open admissions in ``QueueSnapshot``. When a
drop's Redis keys are gone (a restart with no persistence), the checkout's
``drop_recover_if_lost`` rebuilds the stock from orders, the card holds from the
authorizations and the queue from these rows (``queue_rebuild``). What the last second did
not save is lost: those shoppers are told they are not in the queue and join again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from redis.exceptions import LockError

from flashsale.redis import redis_client
from inventory.models import Drop
from inventory.selectors import buyers_get

from .models import QueueEntry, QueueSnapshot
from .redis_keys import queue_keys

logger = logging.getLogger(__name__)

PERSIST_BATCH = 5_000
LOCK_SECONDS = 30
REBUILD_CHUNK = 5_000


@dataclass(frozen=True)
class QueueRebuild:
    entries: int
    prequeue: int
    serving: int
    admitted: int


def queue_persist(*, drop: Drop) -> int:
    """Save the journal's entries and the queue's counters; return how many entries were saved.

    One process at a time per drop (a Redis lock), so no batch is trimmed twice.
    """
    q = queue_keys(drop.pk)
    client = redis_client()
    lock = client.lock(q.persist_lock, timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return 0
    saved = 0
    try:
        while True:
            raw = client.lrange(q.journal, 0, PERSIST_BATCH - 1)
            if raw:
                _entries_save(drop=drop, raw=raw)
                client.ltrim(q.journal, len(raw), -1)
                saved += len(raw)
            if len(raw) < PERSIST_BATCH:
                break
        _snapshot_save(drop=drop)
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("drop %s: the queue's save lock expired before the save ended", drop.pk)
    return saved


def _entries_save(*, drop: Drop, raw: list[bytes]) -> None:
    latest: dict[int, int] = {}
    for item in raw:  # in journal order: a pre-queue entry's ticket comes later and wins
        shopper, ticket = item.decode().split(":")
        latest[int(shopper)] = int(ticket)
    known = set(get_user_model().objects.filter(pk__in=latest).values_list("pk", flat=True))
    if len(known) < len(latest):
        logger.warning("drop %s: %s queue entries name no shopper; not saved", drop.pk, len(latest) - len(known))
    QueueEntry.objects.bulk_create(
        [QueueEntry(drop_id=drop.pk, shopper_id=s, ticket=t) for s, t in latest.items() if s in known],
        batch_size=1_000,
        update_conflicts=True,
        unique_fields=["drop", "shopper"],
        update_fields=["ticket", "saved_at"],
    )


def _snapshot_save(*, drop: Drop) -> None:
    q = queue_keys(drop.pk)
    pipe = redis_client().pipeline(transaction=False)
    pipe.exists(q.started)
    pipe.get(q.last_ticket)
    pipe.get(q.serving)
    pipe.zrange(q.admitted, 0, -1, withscores=True)
    started, last_ticket, serving, admitted = pipe.execute()
    QueueSnapshot.objects.update_or_create(
        drop=drop,
        defaults={
            "started": bool(started),
            "last_ticket": int(last_ticket or 0),
            "serving": int(serving or 0),
            "admitted": {member.decode(): int(score) for member, score in admitted},
        },
    )


def queue_rebuild(*, drop: Drop) -> QueueRebuild:
    """Write the queue back to Redis from the saved entries and the last snapshot."""
    with transaction.atomic():
        entries = list(QueueEntry.objects.filter(drop=drop).order_by("pk").values_list("shopper_id", "ticket"))
        snapshot = QueueSnapshot.objects.filter(drop=drop).first()
    buyers = buyers_get(drop=drop)
    q = queue_keys(drop.pk)
    last_ticket = max([t for _, t in entries if t > 0] + [snapshot.last_ticket if snapshot else 0])
    serving = min(snapshot.serving if snapshot else 0, last_ticket)
    now_ms = int(time.time() * 1000)
    admitted = {
        shopper: expiry
        for shopper, expiry in (snapshot.admitted if snapshot else {}).items()
        if expiry > now_ms and int(shopper) not in buyers
    }
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(q.entries, q.tickets, q.prequeue, q.started, q.last_ticket, q.serving, q.admitted, q.outcome,
                q.parked, q.journal, q.tick, q.deferred)  # fmt: skip
    for start in range(0, len(entries), REBUILD_CHUNK):
        chunk = entries[start : start + REBUILD_CHUNK]
        pipe.hset(q.entries, mapping=dict(chunk))
        tickets = {t: s for s, t in chunk if t > 0}
        if tickets:
            pipe.hset(q.tickets, mapping=tickets)
        parked = {s: "restored" for s, t in chunk if t < 0}
        if parked:
            pipe.hset(q.parked, mapping=parked)
    prequeue = [s for s, t in entries if t == 0]
    for start in range(0, len(prequeue), REBUILD_CHUNK):
        pipe.rpush(q.prequeue, *prequeue[start : start + REBUILD_CHUNK])
    if (snapshot and snapshot.started) or last_ticket:
        pipe.set(q.started, 1)
    pipe.set(q.last_ticket, last_ticket)
    pipe.set(q.serving, serving)
    if admitted:
        pipe.zadd(q.admitted, admitted)
    outcomes = {s: "purchased" for s, t in entries if s in buyers}
    outcomes.update({s: "expired" for s, t in entries if 0 < t <= serving and s not in buyers
                     and str(s) not in admitted})  # fmt: skip
    if outcomes:
        pipe.hset(q.outcome, mapping=outcomes)
    pipe.execute()
    logger.warning("drop %s: queue rebuilt from the database: %s entries, serving %s", drop.pk, len(entries), serving)
    return QueueRebuild(entries=len(entries), prequeue=len(prequeue), serving=serving, admitted=len(admitted))
