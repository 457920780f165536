"""The payments part of the JSON API: the shopper's orders (the card step and the purchase are the
checkout's, in ``flashsale.checkout.api``)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_http_methods

from flashsale.api import api_view, shopper_required
from inventory.selectors import orders_for_shopper

from . import selectors


@require_http_methods(["GET"])
@api_view
@shopper_required
def orders(request: HttpRequest) -> JsonResponse:
    """The shopper's own orders, newest first."""
    return JsonResponse({"orders": [selectors.order_public(o) for o in orders_for_shopper(shopper_id=request.user.pk)]})
