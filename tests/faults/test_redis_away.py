"""Redis away: the API answers 503 service_unavailable (never a 500), websockets are told to try later."""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from flashsale.asgi import application
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_api_and_websockets_during_a_redis_outage(private_redis, client, make_drop):
    make_drop(slug="air")
    client.force_login(UserFactory())
    session = client.cookies["sessionid"].value
    private_redis.kill()

    for path in ("/api/drops", "/api/drops/air", "/api/drops/air/authorization", "/api/orders"):
        response = client.get(path)
        assert (response.status_code, response.json()["error"]["code"]) == (503, "service_unavailable"), path

    async def connect():
        communicator = WebsocketCommunicator(
            application, "/ws/drops/air/",
            headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"),
                     (b"cookie", f"sessionid={session}".encode())],
        )  # fmt: skip
        connected, code = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(connect)() == (False, 1013)


def test_sockets_are_told_where_they_stand_once_the_fan_out_is_back(private_redis, make_drop):
    """Updates published while a node's subscriber was reconnecting are lost: on reconnecting, the hub sends
    each of its sockets the drop frame and its entry again."""
    import asyncio

    from flashsale.checkout.services import drop_recover_if_lost
    from waitingroom import persistence, services
    from waitingroom.realtime import Hub

    drop = make_drop(slug="air")
    shopper = UserFactory()
    services.queue_start(drop=drop)
    services.ticket_issue(drop=drop, shopper_id=shopper.pk, require_authorization=False)
    persistence.queue_persist(drop=drop)

    class Socket:
        def __init__(self):
            self.drop, self.drop_id, self.shopper_id, self.frames = drop, drop.pk, shopper.pk, []

        async def base_send(self, message):
            self.frames.append(json.loads(message["text"]))

        async def close(self, code=None):
            pass

    async def scenario():
        hub, socket = Hub(), Socket()
        hub.add(socket)
        await asyncio.wait_for(hub.ready.wait(), 5)
        # Given Redis lost and back (the drop rebuilt), while the hub's subscriber was away
        await asyncio.to_thread(private_redis.restart_empty)
        await asyncio.to_thread(drop_recover_if_lost, drop=drop)
        # Then, once it is subscribed again, the socket is told the drop's state and its own entry
        deadline = asyncio.get_running_loop().time() + 10
        while len(socket.frames) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        hub._task.cancel()
        return socket.frames

    frames = async_to_sync(scenario)()
    assert [frame["type"] for frame in frames] == ["drop", "entry"]
    assert (frames[1]["status"], frames[1]["ticket"]) == ("waiting", 1)
