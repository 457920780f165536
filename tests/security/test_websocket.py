"""The drop websocket under floods and garbage: the offender is ignored or closed, everyone else keeps their updates."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from flashsale.asgi import application
from inventory import services as inventory_services
from tests.factories import DropFactory, UserFactory
from waitingroom import realtime, selectors, services
from waitingroom.consumers import MAX_FRAME_BYTES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _setup(shoppers: int = 2):
    selectors.drop_cache_clear()
    drop = DropFactory(slug="live", quantity=5, admission_rate=10)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    sessions = []
    for _ in range(shoppers):
        user = UserFactory()
        client = Client()
        client.force_login(user)
        services.ticket_issue(drop=drop, shopper_id=user.pk, require_authorization=False)
        sessions.append(client.cookies["sessionid"].value)
    return drop, sessions


def _socket(session: str | None, path: str = "/ws/drops/live/", origin: bytes = b"http://localhost"):
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def _connected(session: str) -> WebsocketCommunicator:
    communicator = _socket(session)
    connected, _ = await communicator.connect()
    assert connected
    first = json.loads(await communicator.receive_from())
    assert first["type"] == "drop"
    entry = json.loads(await communicator.receive_from())
    assert entry["type"] == "entry"
    return communicator


async def _tick_reaches(drop, communicator, now_ms: int) -> dict:
    """Admit a batch and return the drop frame the socket receives for it."""
    await asyncio.wait_for(realtime.hub.ready.wait(), 5)
    await sync_to_async(services.queue_admit_batch)(drop=drop, now_ms=now_ms)
    while True:
        frame = json.loads(await communicator.receive_from(timeout=5))
        if frame["type"] == "drop":
            return frame


async def test_a_flood_of_small_frames_is_ignored_and_others_keep_their_updates():
    drop, (flooder_session, other_session) = await sync_to_async(_setup)()
    flooder = await _connected(flooder_session)
    other = await _connected(other_session)
    try:
        for i in range(2000):
            await flooder.send_to(text_data=json.dumps({"type": "hello", "n": i}))
        assert await flooder.receive_nothing(timeout=0.2)  # nothing answered, not closed
        frame = await _tick_reaches(drop, other, 1_800_000_000_000)
        assert frame["length"] == 2
        assert (await _tick_reaches(drop, flooder, 1_800_000_001_000))["type"] == "drop"  # still served
    finally:
        await flooder.disconnect()
        await other.disconnect()


@pytest.mark.parametrize(
    "garbage",
    [
        {"bytes_data": b"\x00\xff" * 10},
        {"text_data": "x" * (MAX_FRAME_BYTES + 1)},
        {"text_data": "\U0001f4a9" * (MAX_FRAME_BYTES // 2)},  # 512 characters, 2,048 bytes
    ],
    ids=["binary", "oversized-text", "oversized-multibyte"],
)
async def test_garbage_closes_only_the_offender(garbage):
    drop, (offender_session, other_session) = await sync_to_async(_setup)()
    offender = await _connected(offender_session)
    other = await _connected(other_session)
    try:
        await offender.send_to(**garbage)
        assert await offender.receive_output(timeout=2) == {"type": "websocket.close", "code": 1009}
        frame = await _tick_reaches(drop, other, 1_800_000_000_000)
        assert (frame["type"], frame["length"]) == ("drop", 2)
    finally:
        await offender.disconnect()
        await other.disconnect()
    assert drop.pk not in realtime.hub.by_drop  # both sockets left the hub


async def test_small_garbage_text_is_ignored():
    _drop, (session,) = await sync_to_async(_setup)(1)
    communicator = await _connected(session)
    try:
        for text in (" ", "{", "null", "\x00", '{"type": "entry", "status": "admitted"}', "[]" * 100):
            await communicator.send_to(text_data=text)
        assert await communicator.receive_nothing(timeout=0.2)
    finally:
        await communicator.disconnect()


async def test_one_shopper_holds_a_few_sockets_at_most_and_all_are_removed_on_close(settings):
    # Given a shopper allowed five sockets on a drop, with five open
    settings.WS_MAX_PER_SHOPPER = 5
    drop, (session,) = await sync_to_async(_setup)(1)
    sockets = [await _connected(session) for _ in range(5)]

    # When they open one more, it is accepted and closed with 4429, and the others stay
    extra = _socket(session)
    assert (await extra.connect())[0]
    assert await extra.receive_output() == {"type": "websocket.close", "code": 4429}
    await extra.disconnect()
    assert len(realtime.hub.by_drop[drop.pk]) == 5

    # When they close theirs, every one is gone from the hub, and a new one is welcome again
    for communicator in sockets:
        await communicator.disconnect()
    assert drop.pk not in realtime.hub.by_drop
    again = await _connected(session)
    await again.disconnect()


async def test_a_forged_or_foreign_connection_is_refused():
    await sync_to_async(_setup)(1)
    forged = _socket("not-a-session-key")
    assert (await forged.connect())[0]
    assert await forged.receive_output() == {"type": "websocket.close", "code": 4401}
    await forged.disconnect()
    _drop, (session,) = await sync_to_async(_setup_again)()
    cross_site = _socket(session, origin=b"https://evil.example")
    connected, _ = await cross_site.connect()
    assert not connected  # AllowedHostsOriginValidator: another site's page cannot open it with our cookie
    await cross_site.disconnect()


def _setup_again():
    user = UserFactory()
    client = Client()
    client.force_login(user)
    return None, (client.cookies["sessionid"].value,)
