"""The one Redis connection pool the project's own scripts use (django-redis's)."""

from django_redis import get_redis_connection
from redis import Redis


def redis_client() -> Redis:
    """Return the shared client of the default cache's connection pool."""
    return get_redis_connection("default")
