"""JSON API of sessions, shoppers, drops and the queue: parse, call a service or selector, shape JSON."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods

from flashsale.api import ApiError, api_view, field, invalid, json_body, session_shopper_required
from flashsale.metrics import JOINS
from flashsale.net import client_ip
from flashsale.ratelimits import rate_limited
from inventory.errors import InventoryError
from inventory.selectors import drop_list_visible

from . import bots, pow, selectors, services
from .recaptcha import recaptcha_enabled
from .signals import JOINED_AT_SESSION_KEY

FINGERPRINT_LENGTH = (8, 256)


def _drop_or_404(slug: str):
    drop = selectors.drop_cached_get(slug=slug)
    if drop is None:
        raise ApiError(404, "not_found", "There is no such drop.")
    return drop


def _domain(exc: InventoryError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


# --- Session and accounts ----------------------------------------------------------------------


def _session_body(request: HttpRequest) -> dict:
    user = request.user
    return {"authenticated": user.is_authenticated, "username": user.username if user.is_authenticated else None}


@ensure_csrf_cookie
@require_http_methods(["GET", "POST", "DELETE"])
@rate_limited("sign-in")
@api_view
def session(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(_session_body(request))
    if request.method == "DELETE":
        logout(request)
        return HttpResponse(status=204)
    data = json_body(request)
    username, password = field(data, "username", str), field(data, "password", str)
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise ApiError(400, "invalid_credentials", "The username or password is wrong.")
    login(request, user)
    return JsonResponse(_session_body(request))


@require_http_methods(["POST"])
@rate_limited("sign-up")
@api_view
def shoppers(request: HttpRequest) -> JsonResponse:
    data = json_body(request)
    try:
        user = services.shopper_register(
            username=field(data, "username", str),
            email=field(data, "email", str),
            password=field(data, "password", str),
        )
    except InventoryError as exc:
        raise _domain(exc) from None
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return JsonResponse({"username": user.username}, status=201)


# --- Drops ---------------------------------------------------------------------------------------


@require_GET
@api_view
def drop_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"drops": [selectors.drop_public_get(drop=d) for d in drop_list_visible()]})


@require_GET
@api_view
def drop_detail(request: HttpRequest, slug: str) -> JsonResponse:
    return JsonResponse(selectors.drop_public_get(drop=_drop_or_404(slug)))


@require_http_methods(["GET", "POST"])
@api_view
@session_shopper_required
@rate_limited("challenge", methods=("GET", "POST"))
def challenge(request: HttpRequest, slug: str) -> JsonResponse:
    """A fresh ALTCHA challenge, dearer when the request already looks automated."""
    drop = _drop_or_404(slug)
    verdict = bots.suspicion_score(
        user_agent=request.headers.get("User-Agent", ""), signals={}, account_age=_account_age(request)
    )
    cost = bots.pow_cost(base=settings.POW_COST, verdict=verdict)
    return JsonResponse(pow.challenge_create(drop_id=drop.pk, shopper_id=request.shopper_id, cost=cost))


# --- The queue -----------------------------------------------------------------------------------


def _account_age(request: HttpRequest) -> float | None:
    joined = request.session.get(JOINED_AT_SESSION_KEY)
    return None if joined is None else time.time() - float(joined)


SIGNALS_FIELD = "signals"


def signals_clean(signals: dict) -> dict:
    """Keep the client's automation signals that have a plain value; ignore anything else."""
    return {k: v for k, v in signals.items() if isinstance(k, str) and isinstance(v, bool | int | str)}


@require_http_methods(["GET", "POST"])
@api_view
@session_shopper_required
@rate_limited("queue-join")
@rate_limited("queue-read", methods=("GET",))
def queue(request: HttpRequest, slug: str) -> JsonResponse:
    """Join (POST) or read (GET) the queue; neither touches the database once the drop is cached."""
    drop = _drop_or_404(slug)
    shopper_id = request.shopper_id
    if request.method == "GET":
        try:
            entry = selectors.entry_get(drop=drop, shopper_id=shopper_id)
        except InventoryError as exc:  # the queue is being restored: 503, never a false 404
            raise _domain(exc) from None
        if entry is None:
            raise ApiError(404, "not_in_queue", "You are not in this drop's queue.")
        return JsonResponse(entry.as_dict())
    data = json_body(request)
    payload = field(data, "altcha", str)
    fingerprint = field(data, "fingerprint", str)
    if not FINGERPRINT_LENGTH[0] <= len(fingerprint) <= FINGERPRINT_LENGTH[1]:
        raise invalid("The fingerprint must have 8 to 256 characters.")
    token = field(data, "recaptcha", str, required=recaptcha_enabled())
    try:
        entry, created = services.queue_join(
            drop=drop,
            shopper_id=shopper_id,
            pow_payload=payload,
            fingerprint=fingerprint,
            signals=signals_clean(field(data, SIGNALS_FIELD, dict, required=False, default={})),
            user_agent=request.headers.get("User-Agent", ""),
            account_age=_account_age(request),
            remote_ip=client_ip(request),
            recaptcha_token=token,
        )
    except InventoryError as exc:
        JOINS.labels(drop.slug, exc.code).inc()
        raise _domain(exc) from None
    JOINS.labels(drop.slug, "joined" if created else "existing").inc()
    return JsonResponse(entry.as_dict(), status=201 if created else 200)
