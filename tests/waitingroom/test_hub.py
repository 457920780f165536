"""The per-process fan-out: every local socket gets the frame; one stalled client cannot hold the rest."""

import asyncio
import json
import time

import pytest

from waitingroom import realtime
from waitingroom.redis_keys import updates_channel, updates_pattern


class FakeSocket:
    def __init__(self, drop_id, shopper_id, *, stall=False, gone=False):
        self.drop_id, self.shopper_id, self.stall, self.gone = drop_id, shopper_id, stall, gone
        self.frames, self.closed = [], None

    async def base_send(self, message):
        if self.gone:
            raise OSError("client disconnected")
        if self.stall:
            await asyncio.sleep(3600)
        self.frames.append(message["text"])

    async def close(self, code=None):
        self.closed = code


def publish(hub, drop_id, *, frame=None, entries=None):
    data = json.dumps(
        {
            "frame": json.dumps(frame) if frame else None,
            "entries": {str(k): json.dumps(v) for k, v in (entries or {}).items()},
        }
    )
    return hub.deliver(f"fs:ws:{drop_id}".encode(), data)


@pytest.mark.asyncio
async def test_drop_frames_reach_every_socket_and_entries_only_their_shopper(monkeypatch):
    monkeypatch.setattr(realtime.Hub, "_ensure_running", lambda self: None)
    hub = realtime.Hub()
    sockets = [FakeSocket(1, shopper) for shopper in range(50)] + [FakeSocket(2, 7)]
    for sock in sockets:
        hub.add(sock)
    await publish(hub, 1, frame={"type": "drop", "serving": 3}, entries={7: {"type": "entry", "status": "admitted"}})
    assert all(sock.frames[0] == json.dumps({"type": "drop", "serving": 3}) for sock in sockets[:50])
    assert [len(sock.frames) for sock in sockets[:50]].count(2) == 1  # shopper 7 on drop 1 only
    assert sockets[7].frames[1] == json.dumps({"type": "entry", "status": "admitted"})
    assert sockets[50].frames == []  # another drop's socket


@pytest.mark.asyncio
async def test_a_stalled_socket_is_closed_and_the_broadcast_goes_on(monkeypatch):
    monkeypatch.setattr(realtime.Hub, "_ensure_running", lambda self: None)
    monkeypatch.setattr(realtime, "SEND_TIMEOUT", 0.05)
    hub = realtime.Hub()
    stalled, gone = FakeSocket(1, 1, stall=True), FakeSocket(1, 2, gone=True)
    healthy = [FakeSocket(1, shopper) for shopper in range(3, 10)]
    for sock in [stalled, gone, *healthy]:
        hub.add(sock)
    await publish(hub, 1, frame={"type": "drop"})
    await asyncio.sleep(0)  # let the close task run
    assert all(sock.frames == ['{"type": "drop"}'] for sock in healthy)
    assert stalled.closed == 1013
    assert set(hub.by_drop[1]) == set(healthy)  # both broken sockets left the hub


def test_two_instances_on_one_redis_server_do_not_hear_each_other(settings, redis):
    # Given two instances with the same key prefix on one Redis server, in databases 3 and 4 (pub/sub
    # channels ignore the database number)
    base = settings.PUBSUB_URL.rsplit("/", 1)[0]
    settings.PUBSUB_URL = f"{base}/3"
    mine = updates_channel(42)
    pattern = updates_pattern()
    settings.PUBSUB_URL = f"{base}/4"
    theirs = updates_channel(42)
    listener = redis.pubsub(ignore_subscribe_messages=True)
    listener.psubscribe(pattern)
    try:
        # When the other instance publishes a frame of its drop 42, then this instance does
        redis.publish(theirs, "theirs")
        redis.publish(mine, "mine")

        # Then this instance's subscriber hears only its own
        heard = []
        deadline = time.monotonic() + 3
        while len(heard) < 1 and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.5)
            if message is not None:
                heard.append(message["data"])
        assert heard == [b"mine"]
        assert listener.get_message(timeout=0.5) is None
    finally:
        listener.close()
    assert mine == f"{settings.FLASHSALE_REDIS_PREFIX}:3:ws:42"
    assert theirs == f"{settings.FLASHSALE_REDIS_PREFIX}:4:ws:42"
