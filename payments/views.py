"""Pages of payments (the Stripe webhook is the checkout's: a hold's change reaches the queue too)."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from inventory.selectors import orders_for_shopper

from . import selectors

logger = logging.getLogger(__name__)


@require_http_methods(["GET"])
@login_required
def orders_page(request: HttpRequest) -> HttpResponse:
    orders = [selectors.order_public(order) for order in orders_for_shopper(shopper_id=request.user.pk)]
    return render(request, "payments/orders.html", {"orders": orders})
