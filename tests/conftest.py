"""Fixtures shared by the whole suite: a private Redis key prefix per test, factories, drops."""

import contextlib
import socket
import uuid
from pathlib import Path

import pytest
from django_redis import get_redis_connection
from redis.exceptions import ConnectionError as RedisConnectionError

from flashsale.redis import redis_client
from inventory import services
from tests.factories import DropFactory, UserFactory


@pytest.fixture(autouse=True)
def redis_prefix(settings):
    """Give each test its own Redis key prefix and delete its keys afterwards."""
    prefix = f"{settings.FLASHSALE_REDIS_PREFIX}:{uuid.uuid4().hex[:10]}"
    settings.FLASHSALE_REDIS_PREFIX = prefix
    # The cache (sessions, rate-limit counters) gets the same private prefix.
    settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"], "KEY_PREFIX": prefix}}
    yield prefix
    try:
        for client in {id(c): c for c in (redis_client(), get_redis_connection("default"))}.values():
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
    except RedisConnectionError:
        pass  # a test's private Redis that is already gone took its keys with it


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end the sessions that in-process servers' threads left on it.

    The live servers of the browser, websocket and simulation tests run in daemon threads of this
    process; a connection one of them still holds would make PostgreSQL refuse to drop the database.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


BROWSER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


@pytest.fixture
def client():
    """Django's test client, introducing itself as a desktop browser does."""
    from django.test import Client

    return Client(HTTP_USER_AGENT=BROWSER_USER_AGENT)


@pytest.fixture(autouse=True)
def fresh_drop_cache():
    """Each test starts with an empty per-process drop cache (ids are reused between tests)."""
    from waitingroom.selectors import drop_cache_clear

    drop_cache_clear()
    yield
    drop_cache_clear()


@pytest.fixture
def redis():
    return redis_client()


@pytest.fixture
def shopper(db):
    return UserFactory()


@pytest.fixture
def merchandiser(client):
    """A staff account in the Merchandisers group, signed in on ``client``."""
    from django.contrib.auth.models import Group

    user = UserFactory(username="merch", is_staff=True)
    user.groups.add(Group.objects.get(name="Merchandisers"))
    client.force_login(user)
    return user


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


# --- Payments: a real localstripe process ------------------------------------------------------

LOCALSTRIPE_SERVER = Path(__file__).resolve().parent.parent / "scripts" / "localstripe_server.py"


@pytest.fixture(scope="session")
def localstripe():
    """Start a localstripe server on a free port for the session; yield its base URL."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(LOCALSTRIPE_SERVER), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def stripe_settings(settings, localstripe):
    """Point Stripe at the session's localstripe, with a rate limit tests do not reach by accident."""
    settings.STRIPE_API_BASE = localstripe
    settings.STRIPE_SECRET_KEY = "sk_test_localstripe"
    settings.STRIPE_LOCALSTRIPE = True
    settings.STRIPE_RATE_LIMIT = 10_000
    settings.STRIPE_RATE_BURST = 1_000
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_secret"
    return settings


@contextlib.contextmanager
def serving_asgi():
    """Serve the project's ASGI application (HTTP, the fast path, websockets) with uvicorn in a thread.

    Yields the base URL. Tests that use it need ``transactional_db``: the server's threads only see
    committed rows.
    """
    import threading
    import time

    import uvicorn

    from flashsale.asgi import application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=port, log_level="warning", lifespan="off", proxy_headers=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the ASGI server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
