"""A liveness watch in every Celery worker: a worker that stopped taking work from the broker exits, so that
its supervisor (``scripts/respawn.sh`` locally, systemd or the platform in production) starts a fresh one.

Celery's consumer is meant to reconnect by itself after the broker (Redis) is lost, and mostly does. But in
this project's fault runs (Redis killed and restarted empty mid-sale), a worker sometimes came back connected
yet never read another message: tasks piled up in its queue for a minute while the process looked healthy
(and the ticker, which admits shoppers, stopped admitting anyone). A second failure, a crash on reconnect,
ends the process, and the supervisor covers it. This watch covers the silent one, from the outside in: every
few seconds it counts the messages waiting in the worker's own queues over a connection of its own. When
messages have been waiting for ``BROKER_STALL_SECONDS`` while the worker received none and ran none, the
worker is stalled: it logs why and stops (a warm shutdown, then a cold one, then an exit).

A busy worker is not taken for a stalled one: while any task runs, one was received, or its queues went down
since the last look, the clock starts again. A broker that does not answer is not a stall either (the consumer
is retrying), nor is a queue the worker was told to stop consuming. One limit: two workers on one queue
hide each other's stall (the healthy one keeps the queue short), which costs capacity, not the sale.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from celery import bootsteps
from celery.signals import task_received
from celery.worker import state as worker_state
from django.conf import settings

logger = logging.getLogger(__name__)

# After a warm shutdown was asked for, how long before a cold one, then before the process simply exits.
WARM_SECONDS = 30.0
COLD_SECONDS = 10.0


class BrokerWatch(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.received_at = time.monotonic()

    def start(self, worker) -> None:
        stall = settings.BROKER_STALL_SECONDS
        if stall <= 0:
            return
        task_received.connect(self._received, weak=False)
        self.thread = threading.Thread(target=self._run, args=(worker.app, stall), name="broker-watch", daemon=True)
        self.thread.start()

    def stop(self, worker) -> None:
        self.stopping.set()
        task_received.disconnect(self._received)
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _received(self, **kwargs) -> None:
        self.received_at = time.monotonic()

    def _run(self, app, stall: float) -> None:
        interval = min(5.0, stall / 4)
        waiting_since: float | None = None
        before = 0
        while not self.stopping.wait(interval):
            # The queues it consumes now: one an operator cancelled (`celery control cancel_consumer`) is not
            # its work any more
            queues = sorted(app.amqp.queues.consume_from)
            waiting = waiting_messages(app, queues)
            now = time.monotonic()
            total = sum(waiting.values())
            # Busy: a task runs, one arrived within the last poll, or the queues went down since the last poll
            # (it consumes; expired messages, which it drops unannounced, count too)
            busy = bool(worker_state.active_requests) or now - self.received_at < interval or total < before
            before = total
            if not total or busy:
                waiting_since = None
                continue
            if waiting_since is None:
                waiting_since = now
            elif now - waiting_since >= stall and now - self.received_at >= stall:
                logger.error(
                    "broker watch: %s waiting in %s for %.0f s and this worker received none: it stopped "
                    "consuming; shutting it down for its supervisor to start a fresh one",
                    total, ", ".join(sorted(waiting)), now - waiting_since,
                )  # fmt: skip
                self._shut_down()
                return

    def _shut_down(self) -> None:
        """Warm shutdown (running tasks finish), then cold, then an exit: a stalled worker's own connections may
        hang its shutdown too. Whichever ends the process ends this thread with it."""
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(WARM_SECONDS)
        logger.error("broker watch: the warm shutdown did not end within %.0f s; a cold one", WARM_SECONDS)
        os.kill(os.getpid(), signal.SIGQUIT)
        time.sleep(COLD_SECONDS)
        logger.error("broker watch: the cold shutdown did not end within %.0f s; exiting", COLD_SECONDS)
        os._exit(70)


def waiting_messages(app, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each of ``queues`` that has some, read over a connection of its own; {} when the
    broker does not answer."""
    waiting = {}
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.default_channel
            for queue in queues:
                # Declaring an existing queue changes nothing and answers its size (kombu's Redis transport
                # does not see a prefixed queue with a passive declare)
                count = channel.queue_declare(queue=queue).message_count
                if count:
                    waiting[queue] = count
    except Exception as exc:  # any broker failure means "cannot tell", never "stalled"
        logger.debug("broker watch: the broker did not answer: %s", exc)
        return {}
    return waiting
