"""The Redis connections the project's own code uses, one per role (see REDIS_URL in the settings): the
sale's keys and pub/sub on django-redis's pools, and one asyncio client per loop and URL for the lean path."""

import asyncio
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis
from redis.asyncio import ConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url

from flashsale.lean_redis import SCHEMES as LEAN_SCHEMES
from flashsale.lean_redis import LeanRedis

SALE_ALIAS = "sale"  # the settings' CACHES entry whose pool holds the sale's connections

_async_clients: dict[tuple[int, str], AsyncRedis | AsyncRedisCluster | LeanRedis] = {}


def pubsub_namespace() -> str:
    """Return the prefix of this instance's pub/sub channels: the key prefix and the database number.

    Pub/sub ignores the database number, so two instances on one Redis server with different
    databases (two ``make run``s) would otherwise hear each other's channels.
    """
    database = parse_url(settings.PUBSUB_URL).get("db", 0)
    return f"{settings.FLASHSALE_REDIS_PREFIX}:{database}"


def redis_client() -> Redis | RedisCluster:
    """Return the client of the sale's keys (REDIS_URL): django-redis's shared pool, or on a Redis Cluster
    redis-py's ``RedisCluster`` (it follows MOVED and ASK and keeps a pool per node)."""
    if settings.REDIS_CLUSTER:
        return _cluster_client(settings.REDIS_URL)
    return get_redis_connection(SALE_ALIAS)


@cache
def _cluster_client(url: str) -> RedisCluster:
    return RedisCluster.from_url(
        url, socket_timeout=settings.REDIS_SOCKET_TIMEOUT, socket_connect_timeout=2, max_connections=200,
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_seeds()],
    )  # fmt: skip


def cluster_seeds() -> list[tuple[str, int]]:
    """REDIS_CLUSTER_NODES (``host:port,...``): more nodes to discover the cluster from than REDIS_URL's, so
    that a process starting while that one node is down still finds the others."""
    seeds = []
    for item in filter(None, (part.strip() for part in settings.REDIS_CLUSTER_NODES)):
        host, _, port = item.rpartition(":")
        seeds.append((host or "127.0.0.1", int(port)))
    return seeds


def pubsub_client() -> Redis:
    """Return the client live updates are published with (PUBSUB_URL)."""
    if settings.PUBSUB_URL == settings.REDIS_URL and not settings.REDIS_CLUSTER:
        return redis_client()
    return _plain_client(settings.PUBSUB_URL)


@cache
def _plain_client(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=settings.REDIS_SOCKET_TIMEOUT, socket_connect_timeout=2)


def cache_url(alias: str) -> str:
    """The Redis URL of a django-redis cache alias (its primary, when it lists several)."""
    location = settings.CACHES[alias]["LOCATION"]
    return location if isinstance(location, str) else location[0]


def async_redis_client(url: str | None = None) -> AsyncRedis | AsyncRedisCluster | LeanRedis:
    """Return this event loop's asyncio client of ``url`` (by default REDIS_URL, the sale's keys).

    The lean join path uses it, for the sale's keys and for sessions (the session cache's URL).

    For redis:// and unix:// URLs, one pipelined connection (``flashsale.lean_redis``): every
    request in flight shares it. Otherwise (TLS, say) redis-py's asyncio client on a plain pool,
    large: a blocking pool's condition variable cost every request measurable CPU; should a burst
    exhaust it, the error sends that request through Django, whose pool waits.
    """
    url = url or settings.REDIS_URL
    key = (id(asyncio.get_running_loop()), url)
    client = _async_clients.get(key)
    if client is None:
        if settings.REDIS_CLUSTER and url == settings.REDIS_URL:
            # The lean client speaks to one node; a cluster needs MOVED/ASK: redis-py's asyncio client.
            client = AsyncRedisCluster.from_url(
                url, socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                startup_nodes=[AsyncClusterNode(host, port) for host, port in cluster_seeds()],
            )  # fmt: skip
        elif urlsplit(url).scheme in LEAN_SCHEMES:
            client = LeanRedis(url, timeout=settings.REDIS_SOCKET_TIMEOUT)
        else:
            pool = ConnectionPool.from_url(url, max_connections=1000, socket_timeout=settings.REDIS_SOCKET_TIMEOUT)
            client = AsyncRedis(connection_pool=pool)
        _async_clients[key] = client
    return client
