"""The checkout's part of the JSON API: the card step and the one-click purchase.

Views parse and validate, call one service, and shape the JSON; domain errors become their status
and code here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_http_methods

from flashsale.api import ApiError, api_view, field, invalid, json_body, shopper_required
from flashsale.metrics import PURCHASES
from flashsale.ratelimits import rate_limited
from inventory.errors import InventoryError
from inventory.models import Drop
from payments import selectors as payment_selectors
from payments.errors import PaymentError, PaymentsBusy
from waitingroom.selectors import drop_cached_get

from . import services

PAYMENT_METHOD = re.compile(r"pm_[A-Za-z0-9_]{1,250}")
MAX_IDEMPOTENCY_KEY = 255


def domain_errors(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Raise payment, inventory and waiting-room errors (a kind of inventory error) as the API's errors."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)
        except PaymentsBusy as exc:
            raise ApiError(exc.status, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)}) from None
        except (PaymentError, InventoryError) as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None

    return wrapper


def _drop(slug: str) -> Drop:
    drop = drop_cached_get(slug=slug)  # read from the database at most once a second per process
    if drop is None:
        raise ApiError(404, "not_found", "There is no such drop.")
    return drop


@require_http_methods(["GET", "POST"])
@api_view
@shopper_required
@rate_limited("authorization")
@rate_limited("authorization-read", methods=("GET",))  # a read may ask Stripe (3-D Secure): counted too
@domain_errors
def authorization(request: HttpRequest, slug: str) -> JsonResponse:
    """POST: give the card for this drop (its hold is placed in queue order); GET: the current authorization."""
    drop = _drop(slug)
    if request.method == "GET":
        current = payment_selectors.authorization_latest_get(drop_id=drop.pk, shopper_id=request.user.pk)
        if current is None:
            raise ApiError(404, "not_found", "You have not given a card for this drop.")
        secret = services.card_refresh(drop=drop, authorization=current)
        return JsonResponse(payment_selectors.authorization_public(current, client_secret=secret))
    payment_method = field(json_body(request), "payment_method", str)
    if not PAYMENT_METHOD.fullmatch(payment_method):
        raise invalid("The field 'payment_method' must be a Stripe payment method id (pm_...).")
    outcome = services.card_give(drop=drop, shopper=request.user, payment_method=payment_method)
    body = payment_selectors.authorization_public(outcome.authorization, client_secret=outcome.client_secret)
    return JsonResponse(body, status=202 if outcome.created else 200)


@require_http_methods(["POST"])
@api_view
@shopper_required
@rate_limited("purchase")
@domain_errors
def purchase(request: HttpRequest, slug: str) -> JsonResponse:
    """Buy in one click with the card held for this drop."""
    drop = _drop(slug)
    quantity = field(json_body(request), "quantity", int, required=False, default=1)
    if quantity < 1:
        raise invalid("The field 'quantity' must be at least 1.")
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise invalid(f"The Idempotency-Key header must be at most {MAX_IDEMPOTENCY_KEY} characters.")
    try:
        outcome = services.purchase_make(drop=drop, shopper=request.user, quantity=quantity, idempotency_key=key)
    except (PaymentError, InventoryError) as exc:
        PURCHASES.labels(drop.slug, exc.code).inc()
        raise
    PURCHASES.labels(drop.slug, "paid" if outcome.created else "repeated").inc()
    body = {"order": payment_selectors.order_public(outcome.order)}
    return JsonResponse(body, status=201 if outcome.created else 200)
