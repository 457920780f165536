"""Settings for the test suite: a separate Redis database and key prefix, fast hashing."""

import os

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR, env, redis_connection

# Tests use their own Redis database unless REDIS_URL says otherwise, and a key
# prefix per pytest-xdist worker so parallel workers never share a key.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
REDIS_URL = env("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15")
# A process a test starts (a Celery worker, a web server) is handed the test's own prefix.
FLASHSALE_REDIS_PREFIX = env("FLASHSALE_TEST_PREFIX", default=f"fstest:{_worker}")

# The cache (sessions, rate-limit counters) on the same Redis unless TEST_CACHE_URL says otherwise: the
# suite runs once with it on another database to show the roles are apart (tests/test_redis_roles.py).
# TEST_REDIS_CLUSTER=1 runs the sale's keys on a Redis Cluster (TEST_REDIS_URL a seed node; make test-cluster);
# the cache, pub/sub and the broker then stay on TEST_CACHE_URL.
REDIS_CLUSTER = env.bool("TEST_REDIS_CLUSTER", default=False)
CACHE_URL = env("TEST_CACHE_URL", default="redis://127.0.0.1:6379/15" if REDIS_CLUSTER else REDIS_URL)
_PLAIN_REDIS_URL = CACHE_URL if REDIS_CLUSTER else REDIS_URL
PUBSUB_URL = CHANNEL_LAYER_URL = _PLAIN_REDIS_URL
CACHES = {
    "default": redis_connection(CACHE_URL, key_prefix=FLASHSALE_REDIS_PREFIX),
    "sale": redis_connection(_PLAIN_REDIS_URL),
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": CHANNEL_LAYER_URL, "socket_timeout": None}],
            "prefix": f"{FLASHSALE_REDIS_PREFIX}:asgi",
        },
    }
}
CELERY_BROKER_URL = _PLAIN_REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{FLASHSALE_REDIS_PREFIX}:celery:", "visibility_timeout": 600}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that the many-process tests share one database; one per run (the pid),
    # so two people's runs in one tree never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{_worker}-{os.getpid()}.sqlite3")}
else:
    # The suite forks processes, and a pool's connections must not be shared across a fork.
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)

# Never serve a stale collectstatic copy in tests: static files come from static/ itself.
STATIC_ROOT = VAR_DIR / "test-staticfiles-unused"
WHITENOISE_USE_FINDERS = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "flashsale.logs.ContextFilter"},
        "client_errors": {"()": "flashsale.logs.ClientErrorFilter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["context", "client_errors"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"stripe": {"level": "INFO"}},  # as in base: never Stripe's DEBUG response bodies
}

# The hold scheduler places holds in this process's own thread (tests read their uncommitted data); the tests
# of its concurrency set more.
HOLDS_CONCURRENCY = 1
