"""Pages of payments (the Stripe webhook is the checkout's: a hold's change reaches the queue too)."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from inventory.selectors import order_for_shopper, orders_for_shopper

from . import selectors

logger = logging.getLogger(__name__)


@require_http_methods(["GET"])
@login_required
def orders_page(request: HttpRequest) -> HttpResponse:
    orders = [selectors.order_page_get(order) for order in orders_for_shopper(shopper_id=request.user.pk)]
    return render(request, "payments/orders.html", {"orders": orders})


@require_http_methods(["GET"])
@login_required
def order_page(request: HttpRequest, order_id: int) -> HttpResponse:
    """One order, as a receipt; another shopper's order is a 404 (never a 403 that would confirm it exists)."""
    order = order_for_shopper(shopper_id=request.user.pk, order_id=order_id)
    if order is None:
        raise Http404("There is no such order.")
    return render(request, "payments/order.html", {"order": selectors.order_page_get(order)})
