"""Stripe events: verified on the raw body, applied once per event id, keeping holds in step."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from inventory import services as inventory_services
from inventory.models import Order, OrderStatus

from ..errors import InvalidSignature
from ..models import Authorization, StripeEvent
from .authorizations import authorization_sync

logger = logging.getLogger(__name__)


def stripe_event_verify(*, payload: bytes, signature: str | None) -> stripe.Event:
    """Return the event in the raw body if its signature is Stripe's (made with our webhook secret)."""
    if not settings.STRIPE_WEBHOOK_SECRET or not signature:
        raise InvalidSignature
    try:
        return stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except (stripe.SignatureVerificationError, ValueError):
        raise InvalidSignature from None


@dataclass(frozen=True)
class EventOutcome:
    processed: bool  # False: an event id already processed (a replay changes nothing)
    authorization: Authorization | None = None  # the hold the event changed, if any


def stripe_event_process(*, event: stripe.Event) -> EventOutcome:
    """Apply a verified event once; say whether it was new and which hold it changed."""
    try:
        with transaction.atomic():
            StripeEvent.objects.create(event_id=event.id, type=event.type)
            changed = _apply(event)
    except IntegrityError:
        if StripeEvent.objects.filter(event_id=event.id).exists():
            logger.info("stripe event %s (%s) replayed; ignored", event.id, event.type)
            return EventOutcome(processed=False)
        raise
    return EventOutcome(processed=True, authorization=changed)


def _apply(event: stripe.Event) -> Authorization | None:
    obj = event.data.object.to_dict()
    if event.type.startswith("payment_intent."):
        authorization = Authorization.objects.filter(payment_intent_id=obj.get("id")).first()
        if authorization is None:
            logger.info("stripe event %s is about payment intent %s, not one of ours", event.id, obj.get("id"))
            return None
        fields: dict[str, object] = {}
        if event.type == "payment_intent.canceled":
            fields["cancellation_reason"] = obj.get("cancellation_reason") or ""
        elif event.type == "payment_intent.payment_failed":
            error = obj.get("last_payment_error") or {}
            fields["failure_code"] = error.get("code") or "payment_failed"
        if authorization_sync(authorization=authorization, intent_status=obj.get("status", ""), **fields):
            return authorization
    elif event.type == "charge.refunded":
        _charge_refunded(obj)
    return None


def _charge_refunded(charge: dict) -> None:
    """A refund made in Stripe's dashboard marks the paid order refunded too (units stay sold)."""
    intent_id = charge.get("payment_intent")
    if not intent_id or charge.get("amount_refunded", 0) <= 0:
        return
    authorization = Authorization.objects.filter(payment_intent_id=intent_id).first()
    if authorization is None:
        return
    order = Order.objects.filter(
        drop_id=authorization.drop_id, shopper_id=authorization.shopper_id, status=OrderStatus.PAID
    ).first()
    if order is not None:
        inventory_services.order_mark_refunded(order=order)
