"""ASGI entry point: Django for HTTP (through its WSGI handler, see wsgi_bridge), Channels for websockets."""

import gc
import os

from django.core.wsgi import get_wsgi_application

# What a deploy runs gets the production settings unless it opts out (`make run` sets the local ones).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.production")
django_wsgi_app = get_wsgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from flashsale.api import OutageGuard  # noqa: E402
from flashsale.wsgi_bridge import WsgiBridge  # noqa: E402
from waitingroom.fastpath import QueueFastPath  # noqa: E402
from waitingroom.routing import websocket_urlpatterns  # noqa: E402

# A server holding thousands of sockets has a large, long-lived heap; Python's default thresholds
# then run full collections often enough to stall a broadcast for a second or more. Freeze what
# start-up made, and collect the young generation less eagerly.
gc.freeze()
gc.set_threshold(50_000, 50, 100)

application = ProtocolTypeRouter(
    {
        "http": QueueFastPath(WsgiBridge(django_wsgi_app, threads=settings.WEB_THREADS)),
        "websocket": OutageGuard(AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)
