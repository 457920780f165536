"""Project-wide endpoints: health."""

import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from flashsale.redis import SALE_ALIAS, cache_url, redis_client

logger = logging.getLogger(__name__)


@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says: send them to the shop's icon."""
    return redirect(static("favicon.svg"), permanent=True)


@require_GET
def healthz(request):
    """Answer 200 when the database and Redis both answer, 503 naming the failing part otherwise."""
    failing = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.warning("health check: database unavailable: %s", exc)
        failing["database"] = "unavailable"
    clients = {"redis": redis_client}  # the sale's keys; the cache too when it is a Redis of its own
    if cache_url("default") != cache_url(SALE_ALIAS):
        clients["cache"] = lambda: get_redis_connection("default")
    for part, client in clients.items():
        try:
            client().ping()
        except (RedisError, OSError) as exc:
            logger.warning("health check: %s unavailable: %s", part, exc)
            failing[part] = "unavailable"
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok"})


def csrf_failure(request, reason: str = ""):
    """Answer a missing or wrong CSRF token with the API's JSON error (pages get the same body)."""
    return JsonResponse(
        {"error": {"code": "csrf_failed", "message": "Send the csrftoken cookie's value in the X-CSRFToken header."}},
        status=403,
    )


def ratelimited(request, exception=None):
    """django-ratelimit's blocked requests (``block=True``) get the API's 429."""
    return JsonResponse(
        {"error": {"code": "rate_limited", "message": "Too many requests; try again in a minute."}},
        status=429,
        headers={"Retry-After": "60"},
    )
