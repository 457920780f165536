"""Pages and the Stripe webhook of payments."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from flashsale.api import error_response
from inventory.selectors import orders_for_shopper

from . import selectors, services
from .errors import InvalidSignature

logger = logging.getLogger(__name__)


@require_http_methods(["GET"])
@login_required
def orders_page(request: HttpRequest) -> HttpResponse:
    orders = [selectors.order_public(order) for order in orders_for_shopper(shopper_id=request.user.pk)]
    return render(request, "payments/orders.html", {"orders": orders})


@csrf_exempt  # Stripe signs the body instead; there is no session.
@require_http_methods(["POST"])
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Apply a Stripe event whose signature matches the raw body; a replayed event changes nothing."""
    try:
        event = services.stripe_event_verify(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except InvalidSignature as exc:
        logger.warning("refused a Stripe webhook with a bad signature")
        return error_response(exc.status, exc.code, exc.message)
    processed = services.stripe_event_process(event=event)
    return JsonResponse({"received": True, "duplicate": not processed})
