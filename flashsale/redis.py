"""The Redis connections the project's own scripts use: django-redis's pool, and one asyncio client per loop."""

import asyncio
from urllib.parse import urlsplit

from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis
from redis.asyncio import ConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.connection import parse_url

from flashsale.lean_redis import SCHEMES as LEAN_SCHEMES
from flashsale.lean_redis import LeanRedis

_async_clients: dict[int, AsyncRedis | LeanRedis] = {}


def pubsub_namespace() -> str:
    """Return the prefix of this instance's pub/sub channels: the key prefix and the database number.

    Pub/sub ignores the database number, so two instances on one Redis server with different
    databases (two ``make run``s) would otherwise hear each other's channels.
    """
    database = parse_url(settings.REDIS_URL).get("db", 0)
    return f"{settings.FLASHSALE_REDIS_PREFIX}:{database}"


def redis_client() -> Redis:
    """Return the shared client of the default cache's connection pool."""
    return get_redis_connection("default")


def async_redis_client() -> AsyncRedis | LeanRedis:
    """Return this event loop's asyncio client (the lean join path uses it).

    For redis:// and unix:// URLs, one pipelined connection (``flashsale.lean_redis``): every
    request in flight shares it. Otherwise (TLS, say) redis-py's asyncio client on a plain pool,
    large: a blocking pool's condition variable cost every request measurable CPU; should a burst
    exhaust it, the error sends that request through Django, whose pool waits.
    """
    loop = id(asyncio.get_running_loop())
    client = _async_clients.get(loop)
    if client is None:
        if urlsplit(settings.REDIS_URL).scheme in LEAN_SCHEMES:
            client = LeanRedis(settings.REDIS_URL, timeout=settings.REDIS_SOCKET_TIMEOUT)
        else:
            pool = ConnectionPool.from_url(
                settings.REDIS_URL, max_connections=1000, socket_timeout=settings.REDIS_SOCKET_TIMEOUT
            )
            client = AsyncRedis(connection_pool=pool)
        _async_clients[loop] = client
    return client
