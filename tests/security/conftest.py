"""Fixtures of the hostile-input and security tests: a live ASGI server, signed-in sessions, cheap proofs-of-work."""

import socket
import threading
import time
from datetime import timedelta

import pytest
import uvicorn
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.utils import timezone

from tests.factories import UserFactory
from waitingroom import selectors


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_server_url():
    """Serve flashsale.asgi.application (fast path included) with uvicorn in a thread, once per module.

    Each test that talks to it still takes ``transactional_db`` so that what it writes is committed
    and visible to the server's threads.
    """
    from flashsale.asgi import application

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the ASGI server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def fresh_drop_cache():
    """The per-process drop cache outlives a test's database; start every test without it."""
    selectors.drop_cache_clear()
    yield
    selectors.drop_cache_clear()


@pytest.fixture
def cheap_pow(settings):
    settings.POW_COST = 500


@pytest.fixture
def eager_tasks():
    """Run Celery tasks where they are sent (after commit), as the payments tests do."""
    from flashsale.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def veteran(**kwargs):
    """A shopper old enough that the minimum account age never refuses them."""
    return UserFactory(date_joined=timezone.now() - timedelta(days=30), **kwargs)


def session_for(user) -> str:
    """Sign ``user`` in the way ``login()`` does and return the session key (no request needed)."""
    from importlib import import_module

    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def csrf_pair() -> str:
    """A CSRF secret usable as both the cookie and the header value."""
    from django.middleware.csrf import _get_new_csrf_string

    return _get_new_csrf_string()
