"""The drop websocket through a real server (uvicorn): refusals are close codes a browser can read."""

import asyncio

import pytest
import websockets

from tests.conftest import serving_asgi
from tests.security.conftest import session_for
from tests.waitingroom.test_consumers import _setup

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_real_server_accepts_then_closes_with_the_code_a_browser_can_read(settings):
    """A close before the handshake would reach the browser as an HTTP 403, and it would see only 1006."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    _drop, user, _session = _setup()
    signed_in = session_for(user)

    async def close_code(base: str, slug: str, cookie: str | None) -> int:
        headers = {"Origin": base, **({"Cookie": f"sessionid={cookie}"} if cookie else {})}
        async with websockets.connect(f"{base.replace('http', 'ws', 1)}/ws/drops/{slug}/",
                                      additional_headers=headers) as socket:  # fmt: skip
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), timeout=5)
        return closed.value.rcvd.code

    with serving_asgi() as base:
        assert asyncio.run(close_code(base, "live", None)) == 4401
        assert asyncio.run(close_code(base, "nope", signed_in)) == 4404
