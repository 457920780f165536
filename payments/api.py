"""The payments part of the JSON API: card authorization, one-click purchase, the shopper's orders.

Views parse and validate, call one service or selector, and shape the JSON; domain errors
become their status and code here.
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
from inventory.selectors import drop_get, orders_for_shopper

from . import selectors, services
from .errors import PaymentError, PaymentsBusy

PAYMENT_METHOD = re.compile(r"pm_[A-Za-z0-9_]{1,250}")
MAX_IDEMPOTENCY_KEY = 255


def domain_errors(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Raise payment, inventory and waiting-room errors as the API's errors."""

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
    drop = drop_get(slug=slug)
    if drop is None:
        raise ApiError(404, "not_found", "There is no such drop.")
    return drop


@require_http_methods(["GET", "POST"])
@api_view
@shopper_required
@rate_limited("authorization")
@domain_errors
def authorization(request: HttpRequest, slug: str) -> JsonResponse:
    """POST: hold price x per-customer limit on the shopper's card; GET: the current hold."""
    drop = _drop(slug)
    if request.method == "GET":
        current = selectors.authorization_latest_get(drop_id=drop.pk, shopper_id=request.user.pk)
        if current is None:
            raise ApiError(404, "not_found", "You have not authorized a card for this drop.")
        secret = services.authorization_client_secret(current)
        return JsonResponse(selectors.authorization_public(current, client_secret=secret))
    payment_method = field(json_body(request), "payment_method", str)
    if not PAYMENT_METHOD.fullmatch(payment_method):
        raise invalid("The field 'payment_method' must be a Stripe payment method id (pm_...).")
    outcome = services.authorization_authorize(drop=drop, shopper=request.user, payment_method=payment_method)
    body = selectors.authorization_public(outcome.authorization, client_secret=outcome.client_secret)
    if not outcome.created:
        status = 200
    elif outcome.client_secret:
        status = 202
    else:
        status = 201
    return JsonResponse(body, status=status)


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
    return JsonResponse({"order": selectors.order_public(outcome.order)}, status=201 if outcome.created else 200)


@require_http_methods(["GET"])
@api_view
@shopper_required
def orders(request: HttpRequest) -> JsonResponse:
    """The shopper's own orders, newest first."""
    return JsonResponse({"orders": [selectors.order_public(o) for o in orders_for_shopper(shopper_id=request.user.pk)]})
