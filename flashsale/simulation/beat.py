"""Threads beside the shoppers: the monitor that samples the drop, and a local stand-in for Celery beat.

Both run Django code (Redis and the ORM) and so live in threads of their own, never in the
shoppers' event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import close_old_connections, connections
from redis.exceptions import RedisError

from flashsale.redis import redis_client
from inventory.models import Drop
from inventory.redis_keys import inventory_keys
from waitingroom.redis_keys import queue_keys

logger = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic
    serving: int  # highest ticket admitted
    last_ticket: int  # highest ticket issued
    admitted: int  # admitted and not finished (what the cap counts)
    stock: int | None  # units free in Redis
    holds: int  # claims held in Redis
    length: int  # shoppers queued
    tick_at: float | None = None  # Redis clock (s) of the last admission tick, which set ``serving``


class Monitor(threading.Thread):
    """Read the drop's queue and stock from Redis every quarter second (one pipeline)."""

    def __init__(self, drop: Drop) -> None:
        super().__init__(name="simulate-drop-monitor", daemon=True)
        self.drop_id = drop.pk
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        q, inv = queue_keys(self.drop_id), inventory_keys(self.drop_id)
        client = redis_client()
        while not self.stopping.is_set():
            pipe = client.pipeline(transaction=True)  # one snapshot: serving and the tick that set it
            pipe.get(q.serving)
            pipe.get(q.last_ticket)
            pipe.zcard(q.admitted)
            pipe.get(inv.stock)
            pipe.hlen(inv.holds)
            pipe.hlen(q.entries)
            pipe.hget(q.tick, "last")
            try:
                serving, last_ticket, admitted, stock, holds, length, tick_ms = pipe.execute()
            except RedisError as exc:
                logger.warning("monitor could not read the drop: %s", exc)
            else:
                self.samples.append(
                    Sample(
                        at=time.monotonic(),
                        serving=int(serving or 0),
                        last_ticket=int(last_ticket or 0),
                        admitted=int(admitted),
                        stock=None if stock is None else int(stock),
                        holds=int(holds),
                        length=int(length),
                        tick_at=None if tick_ms is None else int(float(tick_ms)) / 1000,
                    )
                )
            self.stopping.wait(SAMPLE_SECONDS)

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def _release_over_drops() -> None:
    """Cancel the holds of drops that are over, within the Stripe bucket (what the cancellation chain does)."""
    from payments import services as payment_services

    for drop_id in payment_services.drops_with_releasable_holds():
        payment_services.drop_authorizations_cancel(drop_id=drop_id, budget_seconds=1.0)


def _tick() -> None:
    from flashsale.checkout.services import drops_tick_all

    drops_tick_all()


def _holds() -> None:
    from flashsale.checkout.services import holds_place_all

    holds_place_all()


def _sweep() -> None:
    from inventory.services import drop_expire_holds_due

    drop_expire_holds_due()


# (every seconds, what) -- the periodic work of CELERY_BEAT_SCHEDULE; the loser-hold release runs more
# often than beat's 30 s check because, without a worker, nothing else starts it at the sell-out.
LOCAL_BEAT: tuple[tuple[float, Callable[[], None]], ...] = (
    (1.0, _tick),
    (1.0, _holds),
    (5.0, _sweep),
    (2.0, _release_over_drops),
)


class LocalBeat(threading.Thread):
    """Do Celery beat's periodic work in this process (``--tick-locally``), with tasks run eagerly.

    For a server that runs without Celery, as in the test suite. The admission tick is
    exactly-once in Redis, so a beat running elsewhere at the same time admits nobody twice.
    """

    def __init__(self) -> None:
        super().__init__(name="simulate-drop-beat", daemon=True)
        self.stopping = threading.Event()
        self.failures = 0

    def run(self) -> None:
        from flashsale.celery import app

        app.conf.task_always_eager = True  # the tasks the ticks send (expired admissions) run here
        due = [time.monotonic()] * len(LOCAL_BEAT)
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                for i, (every, work) in enumerate(LOCAL_BEAT):
                    if now >= due[i]:
                        due[i] = now + every
                        self._run(work)
                self.stopping.wait(max(0.0, min(due) - time.monotonic()))
        finally:
            connections.close_all()

    def _run(self, work: Callable[[], None]) -> None:
        close_old_connections()
        try:
            work()
        except Exception:  # one failed tick must not stop the beat; it is counted and logged
            self.failures += 1
            logger.exception("local beat: %s failed", work.__name__)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        from flashsale.celery import app

        app.conf.task_always_eager = False
