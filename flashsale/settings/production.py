"""Production settings, what flashsale.asgi, flashsale.wsgi and the Celery app use unless told otherwise:
secrets and the services' URLs only from the environment, secure cookies, HSTS, no /metrics without an
allow-list that says so."""

import environ

# The services a deploy needs have no local default here: a missing one stops start-up, naming it.
_required = environ.Env()
_required("DATABASE_URL")
_required("REDIS_URL")

from .base import *  # noqa: E402, F403
from .base import env  # noqa: E402

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY")  # no default: a missing secret stops start-up
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")

# Password reset e-mails go through SMTP (smtp+tls://user:password@host:587).
vars().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default=f"flashsale <noreply@{ALLOWED_HOSTS[0].lstrip('.')}>")

SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# /metrics answers only the networks named here (none unless set): behind a proxy every client may look
# like a private address, so the local default (loopback and private ranges) would expose it.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
