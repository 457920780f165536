"""Settings for local runs; test.py and production.py build on these.

Every value comes from the environment (django-environ) with a safe local default.
"""

from pathlib import Path

import environ
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# A local-only key: production.py reads DJANGO_SECRET_KEY with no default.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-key-not-for-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "inventory",
    "waitingroom",
    "payments",
    "flashsale.checkout",
]

MIDDLEWARE = [
    "flashsale.metrics.RequestMetricsMiddleware",
    "flashsale.api.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A blocked page (sign-up's @ratelimit) answers RATELIMIT_VIEW's 429 instead of a 403 with a traceback.
    "django_ratelimit.middleware.RatelimitMiddleware",
    "flashsale.logs.LogContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "flashsale.security.SecurityPolicyMiddleware",
]

ROOT_URLCONF = "flashsale.urls"
WSGI_APPLICATION = "flashsale.wsgi.application"
ASGI_APPLICATION = "flashsale.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'flashsale.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue for the lock instead of failing with "database is locked";
    # IMMEDIATE takes the write lock at BEGIN so two writers never deadlock on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Django runs in threads (WEB_THREADS per web process, Celery's pool, channels' sync calls), so
    # persistent connections (CONN_MAX_AGE) would be one per thread. A pool bounds them instead:
    # requests wait for a connection rather than exhausting the server's max_connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    if env.bool("DATABASE_POOL", default=True):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env.int("DATABASE_POOL_SIZE", default=20),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django requests each web process runs at once (threads; see flashsale/wsgi_bridge.py). As many as
# the database pool's connections: a request holds one from its first query to its end.
WEB_THREADS = env.int("WEB_THREADS", default=env.int("DATABASE_POOL_SIZE", default=20))

# Redis has four roles here, each its own URL; by default all four are one Redis (databases apart, keys
# prefixed), and a deploy splits them when one server is no longer enough or needs its own eviction policy:
# - REDIS_URL: the sale's keys (queue, inventory, holds, locks). Never evicted: "noeviction".
# - CACHE_URL: the cache, the sessions' cache and the rate-limit counters. May evict ("allkeys-lru").
# - PUBSUB_URL: the live updates each web node subscribes to (no keys).
# - CELERY_BROKER_URL: Celery's queues (kombu). Never evicted.
# CHANNEL_LAYER_URL is the channel layer's (channels-redis), which only bench/fanout.py measures against.
# REDIS_CLUSTER=1: REDIS_URL is a seed node of a Redis Cluster (redis-py's RedisCluster; every key of a drop
# shares the {drop:<id>} hash tag, so each script runs on one slot). The other roles cannot live on a cluster
# (kombu, pub/sub across nodes, django-redis): CACHE_URL is then required, and the others default to it.
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
REDIS_CLUSTER = env.bool("REDIS_CLUSTER", default=False)
REDIS_CLUSTER_NODES = env.list("REDIS_CLUSTER_NODES", default=[])  # more seed nodes than REDIS_URL's, host:port
CACHE_URL = env("CACHE_URL") if REDIS_CLUSTER else env("CACHE_URL", default=REDIS_URL)
_PLAIN_REDIS_URL = CACHE_URL if REDIS_CLUSTER else REDIS_URL
PUBSUB_URL = env("PUBSUB_URL", default=_PLAIN_REDIS_URL)
CHANNEL_LAYER_URL = env("CHANNEL_LAYER_URL", default=_PLAIN_REDIS_URL)
# Prefix of every key flashsale writes to Redis itself (the cache has its own KEY_PREFIX).
FLASHSALE_REDIS_PREFIX = env("FLASHSALE_REDIS_PREFIX", default="fs")
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=5.0)
# A drop's keys in Redis expire this long after it ends (sold out, ended, canceled), once its queue and
# orders are saved in the database; meanwhile its page and the dashboard still read them.
DROP_REDIS_KEEP_SECONDS = env.int("DROP_REDIS_KEEP_SECONDS", default=24 * 3600)


def redis_connection(url: str, *, key_prefix: str = "") -> dict:
    """A django-redis connection (a "cache" alias) on ``url``; aliases with equal URLs share one pool."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": key_prefix,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            # Blocking: a burst waits (up to the timeout) for a free connection instead of failing.
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {"max_connections": 200, "timeout": 5, "health_check_interval": 30},
        },
    }


CACHES = {
    # Django's cache, sessions (cached_db) and django-ratelimit's counters.
    "default": redis_connection(CACHE_URL, key_prefix=FLASHSALE_REDIS_PREFIX),
    # Not a cache: the connection of the sale's own scripts (flashsale.redis.redis_client; on a cluster,
    # redis-py's RedisCluster instead).
    "sale": redis_connection(_PLAIN_REDIS_URL),
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": CHANNEL_LAYER_URL, "socket_timeout": None}],
            "prefix": f"{FLASHSALE_REDIS_PREFIX}:asgi",
            "capacity": 1000,
        },
    }
}

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=_PLAIN_REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task that was running when its worker died (acks_late: the payment tasks) is handed to another
# worker after visibility_timeout; it must exceed the longest countdown a task is given (300 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{FLASHSALE_REDIS_PREFIX}:celery:", "visibility_timeout": 600}
CELERY_TASK_SOFT_TIME_LIMIT = 30
CELERY_TASK_TIME_LIMIT = 60
CELERY_BEAT_SCHEDULE = {
    "inventory-sweep-holds": {"task": "inventory.tasks.holds_sweep_all", "schedule": 5.0},
    "checkout-tick": {"task": "flashsale.checkout.tasks.queue_tick_all", "schedule": 1.0},
    "checkout-holds": {"task": "flashsale.checkout.tasks.holds_place_all", "schedule": 1.0},
    "checkout-save": {"task": "flashsale.checkout.tasks.queue_save_all", "schedule": 1.0},
    "checkout-settle": {"task": "flashsale.checkout.tasks.purchases_settle", "schedule": 10.0},
    "checkout-redis-release": {"task": "flashsale.checkout.tasks.drops_redis_release_due", "schedule": 300.0},
}
# Admission ticks and the hold scheduler have queues of their own, so Stripe work (cancellation chains of
# up to 20 s on the default queue) never delays them; the Procfile gives them their own worker. A worker
# started without -Q serves every queue (tests, benches).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name) for name in ("celery", "ticks", "holds")]
CELERY_TASK_ROUTES = {
    "flashsale.checkout.tasks.queue_tick_all": {"queue": "ticks"},
    "flashsale.checkout.tasks.queue_save_all": {"queue": "ticks"},
    "flashsale.checkout.tasks.holds_place_all": {"queue": "holds"},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Locally, serve static files straight from static/ so an edit shows without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Password reset e-mails: printed on the console locally; production sends them through EMAIL_URL.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="flashsale <shop@localhost>")
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3600)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"  # without a `next`, after signing in (Django's default, /accounts/profile/, is no page)

RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"

STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="sk_test_localstripe")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY", default="pk_test_localstripe")
# localstripe's address for local runs (`make run` starts it on LOCALSTRIPE_PORT).
STRIPE_API_BASE = env("STRIPE_API_BASE", default=f"http://127.0.0.1:{env.int('LOCALSTRIPE_PORT', default=8420)}")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_RATE_LIMIT = env.int("STRIPE_RATE_LIMIT", default=25)

RECAPTCHA_PUBLIC_KEY = env("RECAPTCHA_PUBLIC_KEY", default="")
RECAPTCHA_PRIVATE_KEY = env("RECAPTCHA_PRIVATE_KEY", default="")
POW_COST = env.int("POW_COST", default=50_000)

# How long a claimed unit is held for its buyer before the sweep puts it back.
INVENTORY_HOLD_SECONDS = env.int("INVENTORY_HOLD_SECONDS", default=120)

LOG_FORMAT = env("LOG_FORMAT", default="plain")  # "json": one JSON object per line
LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "flashsale.logs.ContextFilter"},
        "client_errors": {"()": "flashsale.logs.ClientErrorFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s drop=%(drop)s shopper=%(shopper)s %(message)s"},
        "json": {"()": "flashsale.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context", "client_errors"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Stripe's SDK logs whole response bodies (client secrets included) at DEBUG: never let it. Above
    # that it follows LOG_LEVEL (at INFO it writes four lines a card hold).
    "loggers": {"stripe": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL}},
}
CSRF_FAILURE_VIEW = "flashsale.views.csrf_failure"

# Payments
# A real Stripe key talks to Stripe unless STRIPE_API_BASE says otherwise; the local key talks to localstripe.
_STRIPE_REAL_KEY = (
    STRIPE_SECRET_KEY.startswith(("sk_live_", "sk_test_", "rk_")) and "localstripe" not in STRIPE_SECRET_KEY
)
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com" if _STRIPE_REAL_KEY else STRIPE_API_BASE)
# localstripe refuses parameters it does not implement (cancellation_reason); real Stripe gets them.
STRIPE_LOCALSTRIPE = env.bool("STRIPE_LOCALSTRIPE", default=not STRIPE_API_BASE.startswith("https://api.stripe.com"))
STRIPE_TIMEOUT = env.float("STRIPE_TIMEOUT", default=10.0)  # seconds, per call
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=1)
# Token bucket: at most STRIPE_RATE_LIMIT calls in any one second, bursts of STRIPE_RATE_BURST (an
# authorization takes up to 3 tokens at once, so the burst is at least 3).
STRIPE_RATE_BURST = env.int("STRIPE_RATE_BURST", default=max(3, STRIPE_RATE_LIMIT // 10))
# How long a purchase waits for its capture's token when admitted shoppers press Buy together (then 503).
STRIPE_CAPTURE_WAIT_SECONDS = env.float("STRIPE_CAPTURE_WAIT_SECONDS", default=5.0)
# Tokens of the bucket that background work (placing holds, cancellations) leaves for shoppers' captures.
STRIPE_CAPTURE_RESERVE = env.int("STRIPE_CAPTURE_RESERVE", default=2)
# The hold scheduler places holds for the tickets this many seconds of admission ahead of serving (at the
# drop's rate, within the cap on admitted shoppers), so that admission does not wait for Stripe.
HOLDS_AHEAD_SECONDS = env.float("HOLDS_AHEAD_SECONDS", default=3.0)
# One run of the hold scheduler places holds for at most this long (beat starts one every second).
HOLDS_RUN_SECONDS = env.float("HOLDS_RUN_SECONDS", default=0.9)
# A hold being placed for longer than this belongs to a placer that died: another run places it again,
# with the same idempotency key (so Stripe answers as it did the first time). Above STRIPE_TIMEOUT.
HOLDS_PLACING_STALE_SECONDS = env.float("HOLDS_PLACING_STALE_SECONDS", default=60.0)
# The ticker worker and beat ask Redis this often whether an open drop's state was lost, and rebuild it from
# the database at once (0 turns the watch off; the beat task's once-a-second check remains).
DROP_RECOVERY_POLL_SECONDS = env.float("DROP_RECOVERY_POLL_SECONDS", default=0.25)
# A Celery worker whose queues have had messages waiting this long while it received and ran none stopped
# consuming (seen after the broker was lost): it shuts down for its supervisor to restart it (0: never).
BROKER_STALL_SECONDS = env.float("BROKER_STALL_SECONDS", default=20.0)
# Holds placed at once by one run (Stripe answers in a few hundred ms; the bucket sets the pace).
HOLDS_CONCURRENCY = env.int("HOLDS_CONCURRENCY", default=8)
# How long the client secret of a hold waiting for 3-D Secure is kept (cache) for the shopper's page.
PAYMENTS_CLIENT_SECRET_SECONDS = env.int("PAYMENTS_CLIENT_SECRET_SECONDS", default=3600)
# Card holds last 7 days; cancel them this long before that deadline.
PAYMENTS_HOLD_DAYS = env.int("PAYMENTS_HOLD_DAYS", default=7)
PAYMENTS_CANCEL_MARGIN_HOURS = env.int("PAYMENTS_CANCEL_MARGIN_HOURS", default=12)
# One cancellation task runs at most this long before it hands over to its continuation.
PAYMENTS_CANCEL_BATCH_SECONDS = env.float("PAYMENTS_CANCEL_BATCH_SECONDS", default=20.0)
CELERY_BEAT_SCHEDULE["payments-cancel-due"] = {"task": "payments.tasks.authorizations_cancel_due", "schedule": 30.0}

# Bot mitigation
# How many proxies in front of us append to X-Forwarded-For; 0 means the header is ignored.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
RATELIMIT_IP_META_KEY = "flashsale.net.client_ip"
RATELIMIT_VIEW = "flashsale.views.ratelimited"
RECAPTCHA_REQUIRED_SCORE = env.float("RECAPTCHA_REQUIRED_SCORE", default=0.5)
# When Google cannot be reached: True lets the join through (other checks still apply), False refuses it.
RECAPTCHA_FAIL_OPEN = env.bool("RECAPTCHA_FAIL_OPEN", default=False)
RECAPTCHA_VERIFY_REQUEST_TIMEOUT = env.int("RECAPTCHA_VERIFY_REQUEST_TIMEOUT", default=3)
# (key, rate) limits per endpoint group; see flashsale/ratelimits.py.
RATE_LIMITS = {
    "sign-in": [("ip", "20/m")],
    "sign-up": [("ip", "5/m")],
    "challenge": [("ip", "120/m"), ("shopper", "20/m")],
    "queue-join": [("ip", "120/m"), ("shopper", "10/m")],
    "queue-read": [("shopper", "120/m")],
    "authorization": [("ip", "60/m"), ("shopper", "10/m")],
    "authorization-read": [("shopper", "60/m")],
    "purchase": [("ip", "120/m"), ("shopper", "10/m")],
}

# Metrics
# /metrics answers only these networks (Prometheus scrapes from inside).
METRICS_ALLOWED_NETWORKS = env.list(
    "METRICS_ALLOWED_NETWORKS",
    default=["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
)

# Websockets one shopper may hold open on one drop, per server process (more are closed with 4429).
WS_MAX_PER_SHOPPER = env.int("WS_MAX_PER_SHOPPER", default=5)

# Answer the queue's join and position requests on the lean ASGI path (waitingroom/fastpath.py).
WAITINGROOM_FAST_PATH = env.bool("WAITINGROOM_FAST_PATH", default=True)
