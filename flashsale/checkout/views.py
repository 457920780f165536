"""The drop page (product, countdown, card, queue and one-click buy, live through the API) and Stripe's webhook."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from flashsale.api import error_response
from inventory import selectors as inventory_selectors
from payments import selectors as payment_selectors
from payments import services as payment_services
from payments.errors import InvalidSignature
from payments.selectors import stripe_js_config
from waitingroom import selectors as queue_selectors

from . import services

logger = logging.getLogger(__name__)

# Stripe's test payment methods (localstripe has no card form), chosen from a list on test keys.
TEST_CARDS = [
    ("pm_card_visa", "Visa ending 4242 (succeeds)"),
    ("pm_card_chargeCustomerFail", "Visa ending 0341 (declined when the hold is placed)"),
]


@require_http_methods(["GET", "HEAD"])
def drop_page(request: HttpRequest, slug: str) -> HttpResponse:
    drop = queue_selectors.drop_cached_get(slug=slug)
    if drop is None:
        raise Http404("There is no such drop.")
    bought = None
    if request.user.is_authenticated:
        bought = inventory_selectors.order_paid_get(drop_id=drop.pk, shopper_id=request.user.pk)
    context = {
        "drop": queue_selectors.drop_public_get(drop=drop),
        "order": payment_selectors.order_public(bought) if bought else None,
        "stripe": stripe_js_config(),
        "test_cards": TEST_CARDS if settings.STRIPE_PUBLISHABLE_KEY.startswith("pk_test") else [],
    }
    return render(request, "waitingroom/drop.html", context)


@csrf_exempt  # Stripe signs the body instead; there is no session.
@require_http_methods(["POST"])
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Apply a Stripe event whose signature matches the raw body; a replayed event changes nothing."""
    try:
        event = payment_services.stripe_event_verify(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
    except InvalidSignature as exc:
        logger.warning("refused a Stripe webhook with a bad signature")
        return error_response(exc.status, exc.code, exc.message)
    outcome = services.stripe_event_apply(event=event)
    return JsonResponse({"received": True, "duplicate": not outcome.processed})
