"""Live updates: group names, frames and the fan-out that carries them to websockets.

Publishing is one Redis PUBLISH per drop per tick, whatever the number of shoppers. Each
server process runs one pub/sub subscriber (the ``Hub``) that holds its own sockets by
drop and by shopper: a drop frame is serialized once and written to every local socket of
that drop; a personal entry frame goes only to that shopper's sockets. This replaces a
Channels ``group_send`` per broadcast, which costs a channel-layer message per socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Protocol

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from flashsale.redis import pubsub_client, redis_client

from .errors import QueueUnavailable
from .redis_keys import queue_keys, updates_channel, updates_pattern
from .selectors import drop_frame_get, entry_build, entry_get

if TYPE_CHECKING:
    from inventory.models import Drop

    from .services import TickResult

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # seconds a broadcast waits on one socket before closing it
RESYNC_ATTEMPTS = 30  # seconds a resync waits for a drop being restored


# --- Publishing (sync: services and tasks) ---------------------------------------------------


def _publish(drop_id: int, *, frame: dict | None = None, entries: dict[int, dict] | None = None) -> None:
    message = {
        "frame": json.dumps(frame) if frame else None,
        "entries": {str(k): json.dumps(v) for k, v in (entries or {}).items()},
    }
    try:
        pubsub_client().publish(updates_channel(drop_id), json.dumps(message))
    except RedisError as exc:  # live updates are best effort: polling still answers
        logger.warning("could not publish updates for drop %s: %s", drop_id, exc)


def drop_publish(*, drop: Drop) -> None:
    """Send the drop frame (state, remaining, serving, length) to everyone watching the drop."""
    _publish(drop.pk, frame=drop_frame_get(drop=drop))


def entry_publish(*, drop: Drop, shopper_id: int) -> None:
    """Send one shopper their own entry."""
    try:
        entry = entry_get(drop=drop, shopper_id=shopper_id)
    except QueueUnavailable:  # live updates are best effort; the page reads its entry again meanwhile
        return
    if entry is not None:
        _publish(drop.pk, entries={shopper_id: {"type": "entry", **entry.as_dict()}})


def tick_publish(*, drop: Drop, tick: TickResult) -> None:
    """After a tick: one drop frame for all, and an entry frame for each shopper whose status changed."""
    frame = drop_frame_get(drop=drop)
    entries: dict[int, dict] = {}
    for shopper_id, ticket in zip(tick.admitted, tick.tickets, strict=True):
        entry = entry_build(
            drop=drop,
            ticket=ticket,
            serving=tick.serving,
            length=frame["length"],
            expires_ms=_expiry_ms(drop),
            outcome="",
            rate=tick.measured_rate,
            sold_out=False,
        )
        entries[shopper_id] = {"type": "entry", **entry.as_dict()}
    for shopper_id in tick.expired:
        entries[shopper_id] = {
            "type": "entry",
            "status": "expired",
            "position": 0,
            "serving": tick.serving,
            "length": frame["length"],
            "eta_seconds": None,
            "admission_expires_at": None,
            "decline_code": None,
        }
    _publish(drop.pk, frame=frame, entries=entries)


def _expiry_ms(drop: Drop) -> int:
    return int(time.time() * 1000) + drop.checkout_window * 1000


def current_frames(drop: Drop, shopper_ids: set[int]) -> tuple[str, dict[int, str] | None]:
    """The drop frame and these shoppers' entry frames as they are now (entries None while the queue is being
    restored)."""
    frame = json.dumps(drop_frame_get(drop=drop))
    entries = {}
    try:
        for shopper_id in shopper_ids:
            entry = entry_get(drop=drop, shopper_id=shopper_id)
            if entry is not None:
                entries[shopper_id] = json.dumps({"type": "entry", **entry.as_dict()})
    except QueueUnavailable:
        return frame, None
    return frame, entries


def admissions_announce(*, drop: Drop) -> int:
    """Tell every admitted shopper their entry again, and everyone the drop frame: after a rebuild restored
    admissions that no tick announced. Returns how many were told."""
    admitted = [int(member) for member in redis_client().zrange(queue_keys(drop.pk).admitted, 0, -1)]
    for shopper_id in admitted:
        entry_publish(drop=drop, shopper_id=shopper_id)
    drop_publish(drop=drop)
    return len(admitted)


# --- The fan-out (async: one per server process) ---------------------------------------------


class Socket(Protocol):
    drop: Drop
    drop_id: int
    shopper_id: int

    async def base_send(self, message: dict) -> None: ...

    async def close(self, code: int | None = None) -> None: ...


class Hub:
    """Holds this process's sockets and feeds them from one Redis pub/sub subscription."""

    def __init__(self) -> None:
        self.by_drop: dict[int, set[Socket]] = defaultdict(set)
        self.by_shopper: dict[tuple[int, int], set[Socket]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def add(self, socket: Socket) -> None:
        self._ensure_running()
        self.by_drop[socket.drop_id].add(socket)
        self.by_shopper[(socket.drop_id, socket.shopper_id)].add(socket)

    def discard(self, socket: Socket) -> None:
        self.by_drop[socket.drop_id].discard(socket)
        if not self.by_drop[socket.drop_id]:
            del self.by_drop[socket.drop_id]
        key = (socket.drop_id, socket.shopper_id)
        self.by_shopper[key].discard(socket)
        if not self.by_shopper[key]:
            del self.by_shopper[key]

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self.ready = asyncio.Event()
            self._task = loop.create_task(self._listen())

    async def _listen(self) -> None:
        backoff, away = 0.5, False
        while True:
            client = aioredis.Redis.from_url(settings.PUBSUB_URL, socket_timeout=None, socket_connect_timeout=5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(updates_pattern())
                self.ready.set()
                backoff = 0.5
                if away:  # what was published meanwhile is lost: tell every socket where it stands now
                    self._later(self.resync())
                away = True
                async for message in pubsub.listen():
                    await self.deliver(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                logger.warning("websocket fan-out lost Redis (%s); reconnecting in %.1fs", exc, backoff)
            finally:
                self.ready.clear()
                await pubsub.aclose()
                await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10)

    def _later(self, job) -> None:
        self._tasks.add(asyncio.get_running_loop().create_task(job))
        self._tasks = {task for task in self._tasks if not task.done()}

    async def resync(self, attempt: int = 0) -> None:
        """Send every socket its drop frame and its entry as they are now (after the subscriber was away,
        the updates published meanwhile never came): one read per socket, as a socket's first frames. While
        a drop's queue is still being restored, its entries are sent again a second later."""
        restoring = False
        for sockets in list(self.by_drop.values()):
            sockets = list(sockets)
            if not sockets:
                continue
            try:
                frame, entries = await database_sync_to_async(current_frames)(
                    sockets[0].drop, {sock.shopper_id for sock in sockets}
                )
            except (RedisError, OSError) as exc:  # gone again: the next reconnection tries again
                logger.warning("websocket fan-out could not resync drop %s: %s", sockets[0].drop_id, exc)
                return
            restoring = restoring or entries is None
            jobs = [(sock, {"type": "websocket.send", "text": frame}) for sock in sockets]
            jobs += [(sock, {"type": "websocket.send", "text": entries[sock.shopper_id]})
                     for sock in sockets if entries and sock.shopper_id in entries]  # fmt: skip
            await self._send_all(jobs)
        if restoring and attempt < RESYNC_ATTEMPTS:
            await asyncio.sleep(1)
            await self.resync(attempt + 1)

    async def deliver(self, channel: bytes | str, data: bytes | str) -> None:
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            drop_id = int(channel.rsplit(":", 1)[1])
            message = json.loads(data)
        except (ValueError, IndexError):
            logger.warning("ignored a malformed update on %s", channel)
            return
        jobs: list[tuple[Socket, dict]] = []
        if message.get("frame"):
            event = {"type": "websocket.send", "text": message["frame"]}
            jobs.extend((sock, event) for sock in list(self.by_drop.get(drop_id, ())))
        for shopper, frame in (message.get("entries") or {}).items():
            event = {"type": "websocket.send", "text": frame}
            jobs.extend((sock, event) for sock in list(self.by_shopper.get((drop_id, int(shopper)), ())))
        if jobs:
            await self._send_all(jobs)

    async def _send_all(self, jobs: list[tuple[Socket, dict]]) -> None:
        """Write each frame straight to its socket's ASGI send, one after another.

        No task per socket: a send that finds room in the socket's buffer completes at once,
        so a broadcast to 10,000 sockets allocates next to nothing. A client that stopped
        reading fills its buffer and would hold the others up; after ``SEND_TIMEOUT`` it is
        closed and the broadcast goes on.
        """
        index = 0
        while index < len(jobs):
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    while index < len(jobs):
                        sock, event = jobs[index]
                        index += 1
                        try:
                            await sock.base_send(event)
                        except (OSError, RuntimeError):  # the client went away meanwhile
                            self.discard(sock)
            except TimeoutError:
                stalled = jobs[index - 1][0]
                logger.warning("closing a websocket that stopped reading (shopper %s)", stalled.shopper_id)
                self.discard(stalled)
                self._later(stalled.close(code=1013))


hub = Hub()
