"""The Redis connections the project's own scripts use: django-redis's pool, and one asyncio pool per loop."""

import asyncio

from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis
from redis.asyncio import ConnectionPool
from redis.asyncio import Redis as AsyncRedis

_async_clients: dict[int, AsyncRedis] = {}


def redis_client() -> Redis:
    """Return the shared client of the default cache's connection pool."""
    return get_redis_connection("default")


def async_redis_client() -> AsyncRedis:
    """Return this event loop's asyncio client (the lean join path uses it).

    A plain pool, large: a blocking pool's condition variable cost every request measurable CPU.
    Should a burst still exhaust it, the error sends that request through Django, whose pool waits.
    """
    loop = id(asyncio.get_running_loop())
    client = _async_clients.get(loop)
    if client is None:
        pool = ConnectionPool.from_url(
            settings.REDIS_URL, max_connections=1000, socket_timeout=settings.REDIS_SOCKET_TIMEOUT
        )
        client = _async_clients[loop] = AsyncRedis(connection_pool=pool)
    return client
