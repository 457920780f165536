"""ASGI entry point: Django for HTTP, Channels for websockets."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from flashsale.api import OutageGuard  # noqa: E402
from waitingroom.fastpath import QueueFastPath  # noqa: E402
from waitingroom.routing import websocket_urlpatterns  # noqa: E402

# A server holding thousands of sockets has a large, long-lived heap; Python's default thresholds
# then run full collections often enough to stall a broadcast for a second or more. Freeze what
# start-up made, and collect the young generation less eagerly.
gc.freeze()
gc.set_threshold(50_000, 50, 100)

application = ProtocolTypeRouter(
    {
        "http": QueueFastPath(django_asgi_app),
        "websocket": OutageGuard(AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    }
)
