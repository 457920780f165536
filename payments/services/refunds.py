"""Refunds of paid orders through Stripe; putting the units back on sale is a separate choice."""

from __future__ import annotations

import logging

import stripe
from django.db import transaction

from inventory import services as inventory_services
from inventory.models import Order, OrderStatus

from ..errors import NotRefundable, PaymentsUnavailable
from ..models import Authorization, AuthorizationStatus, Refund
from ..stripe_client import (
    STRIPE_NETWORK_ERRORS,
    from_minor_units,
    idempotency_key,
    stripe_client,
    stripe_tokens_take,
    to_minor_units,
)

logger = logging.getLogger(__name__)


def order_refund(*, order: Order) -> Refund:
    """Refund a paid order's amount through Stripe and mark the order refunded (idempotent)."""
    existing = Refund.objects.filter(order=order).first()
    if existing is not None:
        return existing
    authorization = Authorization.objects.filter(
        drop_id=order.drop_id, shopper_id=order.shopper_id, status=AuthorizationStatus.CAPTURED
    ).first()
    if order.status != OrderStatus.PAID or authorization is None:
        raise NotRefundable
    stripe_tokens_take(count=1)
    try:
        # The amount is explicit: localstripe would otherwise refund the whole hold, not what was captured.
        refund = stripe_client().v1.refunds.create(
            params={
                "payment_intent": authorization.payment_intent_id,
                "amount": to_minor_units(order.amount, order.currency),
            },
            options={"idempotency_key": idempotency_key("refund", order)},
        )
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("refund of order %s did not answer: %s", order.pk, exc)
        raise PaymentsUnavailable from None
    except stripe.InvalidRequestError as exc:
        logger.warning("refund of order %s refused: %s", order.pk, exc)
        raise NotRefundable(str(exc.user_message or exc)) from None
    with transaction.atomic():
        record = Refund.objects.create(
            order=order,
            authorization=authorization,
            refund_id=refund.id,
            amount=from_minor_units(refund.amount, refund.currency),
            currency=refund.currency,
            status=refund.status or "",
        )
        inventory_services.order_mark_refunded(order=order)
    logger.info("refunded order %s (%s)", order.pk, refund.id)
    return record


@transaction.atomic
def refund_restock(*, refund: Refund) -> bool:
    """Put a refunded order's units back on sale (once): the drop offers that many more units."""
    locked = Refund.objects.select_for_update().select_related("order__drop").get(pk=refund.pk)
    if locked.restocked:
        return False
    drop = locked.order.drop
    inventory_services.drop_quantity_set(drop=drop, quantity=drop.quantity + locked.order.quantity)
    Refund.objects.filter(pk=locked.pk).update(restocked=True)
    refund.restocked = True
    return True
