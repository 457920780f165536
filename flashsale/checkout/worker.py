"""A watch in the ticker worker and in beat that rebuilds a drop within a fraction of a second of Redis
coming back.

The beat's ``queue_save_all`` notices a lost drop too, but only once the worker has found the broker
again, and the broker is usually the same Redis: Celery's consumer retries its connection after 2 s,
then 4 s, 6 s... so a drop would stay paused for seconds after Redis answers. This thread does not
need the broker: every ``DROP_RECOVERY_POLL_SECONDS`` it asks Redis whether each open drop's state is
there (one round trip) and rebuilds the ones that are gone (``drop_recover_if_lost``, under a lock, so
several tickers rebuild a drop once). Beat runs it too: a Celery worker can end when the broker goes (a
crash of Celery 5.7's reconnect, seen in the fault runs) and is back only seconds later.
"""

from __future__ import annotations

import logging
import threading
import time

from billiard import current_process
from celery import bootsteps
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

DROPS_LIST_SECONDS = 5.0  # how long the list of open drops is reused before it is read again
WATCHED_QUEUE = "ticks"


class RecoveryLoop:
    """The watch itself: a daemon thread asking Redis every ``interval`` whether an open drop's state is gone."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="drop-recovery-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()
        logger.info("drop recovery watch: started, every %.2f s", self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        from . import services  # Django's apps are ready once the worker runs (not when this module loads)

        interval = self.interval
        drops: list = []
        listed = -DROPS_LIST_SECONDS
        failing = False
        while not self.stopping.wait(interval):
            try:
                if time.monotonic() - listed >= DROPS_LIST_SECONDS:
                    close_old_connections()
                    drops, listed = services.drops_open(), time.monotonic()
                rebuilt = services.drops_recover_lost(drops=drops)
                if rebuilt:
                    listed = -DROPS_LIST_SECONDS  # read the drops again: a rebuild may take long
                if failing:
                    logger.warning("drop recovery watch: Redis and the database answer again")
                failing = False
            except (RedisError, DatabaseError, OSError) as exc:
                if not failing:  # one line per outage, not four a second
                    logger.warning("drop recovery watch: %s; trying again every %.2f s", exc, interval)
                failing = True
                close_old_connections()
            except Exception:
                logger.exception("drop recovery watch failed; trying again")


class RecoveryWatch(bootsteps.StartStopStep):
    """Runs in workers that serve the ``ticks`` queue (the ticker; a worker serving every queue too)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.loop: RecoveryLoop | None = None

    def start(self, worker) -> None:
        consumed = set(worker.app.amqp.queues.consume_from or ())
        interval = settings.DROP_RECOVERY_POLL_SECONDS
        if interval <= 0 or (consumed and WATCHED_QUEUE not in consumed):
            return
        self.loop = RecoveryLoop(interval)
        self.loop.start()

    def stop(self, worker) -> None:
        if self.loop is not None:
            self.loop.stop()


def beat_recovery_start(**kwargs) -> None:
    """The same watch in Celery beat (``beat_init``): beat outlives a lost broker (it logs and sends again),
    while a worker may end with it and take a few seconds to be started again by its supervisor; with both
    watching, a drop is rebuilt within a fraction of a second either way (under a lock, once)."""
    interval = settings.DROP_RECOVERY_POLL_SECONDS
    # Beat embedded in a worker (`worker --beat`) runs in a child process: the worker's own watch covers it
    if interval > 0 and current_process().name == "MainProcess":
        RecoveryLoop(interval).start()
