"""Fixtures shared by the whole suite: a private Redis key prefix per test, factories, drops."""

import uuid

import pytest

from flashsale.redis import redis_client
from inventory import services
from tests.factories import DropFactory, UserFactory


@pytest.fixture(autouse=True)
def redis_prefix(settings):
    """Give each test its own Redis key prefix and delete its keys afterwards."""
    prefix = f"{settings.FLASHSALE_REDIS_PREFIX}:{uuid.uuid4().hex[:10]}"
    settings.FLASHSALE_REDIS_PREFIX = prefix
    yield prefix
    client = redis_client()
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis():
    return redis_client()


@pytest.fixture
def shopper(db):
    return UserFactory()


@pytest.fixture
def make_drop(db):
    """Create and arm a live drop; keyword arguments go to the factory."""

    def make(**kwargs):
        drop = DropFactory(**kwargs)
        services.drop_arm(drop=drop)
        return drop

    return make


@pytest.fixture
def drop(make_drop):
    return make_drop()
