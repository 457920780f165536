"""The Redis connections the project's own scripts use: django-redis's pool, and one asyncio pool per loop."""

import asyncio

from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis

_async_clients: dict[int, AsyncRedis] = {}


def redis_client() -> Redis:
    """Return the shared client of the default cache's connection pool."""
    return get_redis_connection("default")


def async_redis_client() -> AsyncRedis:
    """Return this event loop's asyncio client (the lean join path uses it).

    The pool blocks for a free connection instead of failing when it is exhausted.
    """
    loop = id(asyncio.get_running_loop())
    client = _async_clients.get(loop)
    if client is None:
        pool = BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=200, timeout=5, socket_timeout=settings.REDIS_SOCKET_TIMEOUT
        )
        client = _async_clients[loop] = AsyncRedis(connection_pool=pool)
    return client
