"""One-click purchase: claim the unit, reserve the order, capture the hold, mark it paid.

The order and the stock agree whatever fails: a refused or timed-out capture fails the
order and puts its units back on sale at once; a crash between claim and capture leaves a
pending order whose hold the inventory's sweep expires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from inventory import services as inventory_services
from inventory.models import Drop, Order, OrderStatus
from waitingroom import services as waitingroom_services

from ..errors import AuthorizationRequired, PaymentFailed, PurchaseInProgress
from ..models import Authorization, AuthorizationStatus
from ..stripe_client import stripe_tokens_take
from .authorizations import authorization_capture, shopper_lock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurchaseOutcome:
    order: Order
    created: bool


def purchase_make(*, drop: Drop, shopper, quantity: int = 1, idempotency_key: str = "") -> PurchaseOutcome:
    """Buy ``quantity`` units for an admitted shopper with their card hold, once per shopper and drop.

    The same purchase again (same shopper and drop, or the same ``Idempotency-Key``) returns
    the first order. Raises the waiting room's ``NotAdmitted``/``AdmissionExpired``, the
    inventory's ``SoldOut``/``LimitReached``/``InsufficientStock``, ``AuthorizationRequired``,
    ``PaymentsBusy``, ``PurchaseInProgress`` or ``PaymentFailed``.
    """
    done = _purchase_existing(drop=drop, shopper=shopper, idempotency_key=idempotency_key)
    if done is not None:
        return PurchaseOutcome(done, created=False)
    with shopper_lock(drop_id=drop.pk, shopper_id=shopper.pk, purpose="purchase", error=PurchaseInProgress):
        done = _purchase_existing(drop=drop, shopper=shopper, idempotency_key=idempotency_key)
        if done is not None:
            return PurchaseOutcome(done, created=False)
        waitingroom_services.admission_check(drop=drop, shopper_id=shopper.pk)
        authorization = Authorization.objects.filter(
            drop=drop, shopper=shopper, status=AuthorizationStatus.AUTHORIZED
        ).first()
        if authorization is None:
            failed = Order.objects.filter(drop=drop, shopper=shopper, status=OrderStatus.FAILED).first()
            if failed is not None:
                return PurchaseOutcome(failed, created=False)  # the capture failed and the hold is gone
            raise AuthorizationRequired
        # The capture's token first: a busy pipeline refuses before any unit is taken.
        stripe_tokens_take(count=1)
        claim = inventory_services.unit_claim(drop=drop, shopper_id=shopper.pk, quantity=quantity)
        order = inventory_services.order_reserve(claim=claim, shopper=shopper, idempotency_key=idempotency_key)
        try:
            authorization_capture(authorization=authorization, order=order)
        except PaymentFailed:
            inventory_services.order_mark_failed(order=order, failure_code="payment_failed")
            raise
        if not inventory_services.order_mark_paid(order=order):
            # The hold expired while Stripe answered and the sweep failed the order: give the money back.
            from .. import tasks

            logger.error("order %s was captured after its hold expired; refunding", order.pk)
            transaction.on_commit(lambda: tasks.authorization_reconcile.delay(authorization.pk, order.pk))
            order.refresh_from_db()
            return PurchaseOutcome(order, created=True)
    waitingroom_services.admission_complete(drop=drop, shopper_id=shopper.pk)
    if claim.stock_after == 0:
        from .. import tasks

        transaction.on_commit(lambda: tasks.drop_authorizations_release.delay(drop.pk))
    return PurchaseOutcome(order, created=True)


def _purchase_existing(*, drop: Drop, shopper, idempotency_key: str) -> Order | None:
    """Return the order this request repeats, if any; raise ``PurchaseInProgress`` while it is still pending."""
    orders = Order.objects.filter(shopper=shopper)
    order = None
    if idempotency_key:
        order = orders.filter(drop=drop, idempotency_key=idempotency_key).first()
    if order is None:
        order = orders.filter(drop=drop, status__in=[OrderStatus.PENDING, OrderStatus.PAID]).first()
    if order is not None and order.status == OrderStatus.PENDING:
        raise PurchaseInProgress
    return order
