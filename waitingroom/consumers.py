"""The drop websocket: authenticate, register with this process's fan-out hub, send the first frames."""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import selectors
from .errors import QueueUnavailable
from .realtime import hub

MAX_FRAME_BYTES = 1024


class DropConsumer(AsyncWebsocketConsumer):
    drop_id: int
    shopper_id: int

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(4401)
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        drop = await database_sync_to_async(selectors.drop_cached_get)(slug=slug)
        if drop is None:
            await self._refuse(4404)
            return
        if len(hub.by_shopper.get((drop.pk, user.pk), ())) >= settings.WS_MAX_PER_SHOPPER:
            await self._refuse(4429)  # a page or two per shopper is normal; hundreds is a client holding sockets
            return
        self.drop, self.drop_id, self.shopper_id = drop, drop.pk, user.pk
        await self.accept()
        hub.add(self)
        frame, entry = await database_sync_to_async(self._first_frames)()
        await self.send(text_data=json.dumps(frame))
        if entry is not None:
            await self.send(text_data=json.dumps({"type": "entry", **entry.as_dict()}))

    async def _refuse(self, code: int) -> None:
        """Accept, then close with ``code``: a close before the handshake reaches a browser as an HTTP 403,
        and the page could not tell "signed out" (4401) or "no such drop" (4404) from a network failure."""
        await self.accept()
        await self.close(code=code)

    def _first_frames(self):
        try:
            entry = selectors.entry_get(drop=self.drop, shopper_id=self.shopper_id)
        except QueueUnavailable:  # the queue is being restored; the shopper's entry comes with the next change
            entry = None
        return selectors.drop_frame_get(drop=self.drop), entry

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "drop_id"):
            hub.discard(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The socket only speaks; a client that sends large or binary frames is closed.
        if bytes_data is not None or (text_data is not None and len(text_data.encode()) > MAX_FRAME_BYTES):
            await self.close(code=1009)
