"""Fixtures of the hostile-input and security tests: a live ASGI server, signed-in sessions, cheap proofs-of-work."""

from datetime import timedelta

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.utils import timezone

from tests.conftest import serving_asgi
from tests.factories import UserFactory


@pytest.fixture(scope="module")
def live_server_url():
    """Serve flashsale.asgi.application (fast path included) with uvicorn in a thread, once per module.

    Each test that talks to it still takes ``transactional_db`` so that what it writes is committed
    and visible to the server's threads.
    """
    with serving_asgi() as url:
        yield url


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
