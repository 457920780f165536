"""The baseline of bench/fanout.py: the project's ASGI application plus a plain Channels group consumer.

Served by the bench's second uvicorn process (never in production). Everything the project
serves is unchanged; ``/ws/baseline/<slug>/`` adds a minimal ``AsyncWebsocketConsumer`` that
authenticates like the drop socket, joins one channel-layer group per drop on connect, sends
the first drop frame, and forwards each ``group_send`` message (a pre-serialized frame) to its
socket. Its channel layer is the alias ``fanout_baseline``: the project's ``default`` layer
config with the overrides the bench passes as JSON in ``FANOUT_BASELINE_LAYER`` (the bench's
own ``group_send`` uses the same config, so both sides agree on prefix and capacity).
"""

from __future__ import annotations

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from flashsale.asgi import application as project_application  # noqa: E402
from waitingroom import selectors  # noqa: E402
from waitingroom.routing import websocket_urlpatterns  # noqa: E402

LAYER_ALIAS = "fanout_baseline"
settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS, LAYER_ALIAS: json.loads(os.environ["FANOUT_BASELINE_LAYER"])}


def group_name(drop_id: int) -> str:
    return f"fanout-baseline.drop.{drop_id}"


class BaselineDropConsumer(AsyncWebsocketConsumer):
    """A drop socket the textbook Channels way: one group per drop, one group member per socket."""

    channel_layer_alias = LAYER_ALIAS
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        drop = await database_sync_to_async(selectors.drop_cached_get)(slug=self.scope["url_route"]["kwargs"]["slug"])
        if drop is None:
            await self.close(code=4404)
            return
        self.group = group_name(drop.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        frame = await database_sync_to_async(selectors.drop_frame_get)(drop=drop)
        await self.send(text_data=json.dumps(frame))

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def drop_update(self, event: dict) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {
        "http": project_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter([path("ws/baseline/<slug:slug>/", BaselineDropConsumer.as_asgi()), *websocket_urlpatterns])
            )
        ),
    }
)
