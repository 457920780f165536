"""The drop page: product, countdown, card, queue and one-click buy in one page (live through the API)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from payments.selectors import stripe_js_config
from waitingroom import selectors as queue_selectors

# Stripe's test payment methods (localstripe has no card form), chosen from a list on test keys.
TEST_CARDS = [
    ("pm_card_visa", "Visa ending 4242 (succeeds)"),
    ("pm_card_chargeCustomerFail", "Visa ending 0341 (declined when the hold is placed)"),
]


def drop_page(request: HttpRequest, slug: str) -> HttpResponse:
    drop = queue_selectors.drop_cached_get(slug=slug)
    if drop is None:
        raise Http404("There is no such drop.")
    context = {
        "drop": queue_selectors.drop_public_get(drop=drop),
        "stripe": stripe_js_config(),
        "test_cards": TEST_CARDS if settings.STRIPE_PUBLISHABLE_KEY.startswith("pk_test") else [],
    }
    return render(request, "waitingroom/drop.html", context)
