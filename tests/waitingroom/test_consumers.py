"""The drop websocket: who may connect, the first frames, and the per-process fan-out."""

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

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _setup():
    selectors.drop_cache_clear()
    drop = DropFactory(slug="live", quantity=5, admission_rate=10)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    user = UserFactory()
    client = Client()
    client.force_login(user)
    services.ticket_issue(drop=drop, shopper_id=user.pk, require_authorization=False)
    return drop, user, client.cookies["sessionid"].value


def _communicator(path, session=None):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def test_anonymous_sockets_are_closed_with_4401():
    await sync_to_async(_setup)()
    communicator = _communicator("/ws/drops/live/")
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed with the code the page reads
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


async def test_unknown_drop_is_closed_with_4404():
    _drop, _user, session = await sync_to_async(_setup)()
    communicator = _communicator("/ws/drops/nope/", session)
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4404}
    await communicator.disconnect()


async def test_first_frames_then_tick_updates_and_admission():
    drop, _user, session = await sync_to_async(_setup)()
    communicator = _communicator("/ws/drops/live/", session)
    connected, _ = await communicator.connect()
    assert connected
    try:
        first = json.loads(await communicator.receive_from())
        assert first == {"type": "drop", "state": "live", "remaining": 5, "serving": 0, "length": 1}
        entry = json.loads(await communicator.receive_from())
        assert (entry["type"], entry["status"], entry["position"]) == ("entry", "waiting", 1)
        await asyncio.wait_for(realtime.hub.ready.wait(), 5)
        await sync_to_async(services.queue_admit_batch)(drop=drop, now_ms=1_800_000_000_000)
        await communicator.receive_from()  # the first tick admits nobody yet: only the drop frame
        await sync_to_async(services.queue_admit_batch)(drop=drop, now_ms=1_800_000_001_000)
        frames = [json.loads(await communicator.receive_from()) for _ in range(2)]
        by_type = {f["type"]: f for f in frames}
        assert by_type["drop"] == {"type": "drop", "state": "live", "remaining": 5, "serving": 1, "length": 1}
        assert (by_type["entry"]["status"], by_type["entry"]["position"]) == ("admitted", 0)
        assert by_type["entry"]["admission_expires_at"] is not None
    finally:
        await communicator.disconnect()


async def test_binary_frames_close_the_socket():
    _drop, _user, session = await sync_to_async(_setup)()
    communicator = _communicator("/ws/drops/live/", session)
    await communicator.connect()
    await communicator.receive_from()
    await communicator.receive_from()
    await communicator.send_to(bytes_data=b"\x00" * 10)
    output = await communicator.receive_output()
    assert output == {"type": "websocket.close", "code": 1009}
    await communicator.disconnect()
