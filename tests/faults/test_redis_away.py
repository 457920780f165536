"""Redis away: the API answers 503 service_unavailable (never a 500), websockets are told to try later."""

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
