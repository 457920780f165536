"""Card holds: a manual-capture PaymentIntent per shopper and drop, created before the queue.

Stripe calls take their tokens from the shared bucket first; the deterministic idempotency
keys (``auth:{drop}:{shopper}:{attempt}``, ``capture:{order}``, ``cancel:{authorization}``)
make a retried call return what the first one did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from redis.exceptions import LockError

from flashsale.redis import redis_client
from inventory.models import Drop, DropState, Order
from inventory.selectors import drop_state_get

from ..errors import (
    AuthorizationInProgress,
    CardDeclined,
    DropClosed,
    DropNotOpen,
    InvalidPaymentMethod,
    PaymentFailed,
    PaymentsUnavailable,
)
from ..models import OPEN_STATUSES, Authorization, AuthorizationStatus, StripeCustomer
from ..redis_keys import authorized_key, shopper_lock_key
from ..stripe_client import STRIPE_NETWORK_ERRORS, from_minor_units, stripe_client, stripe_tokens_take, to_minor_units

logger = logging.getLogger(__name__)

LOCK_SECONDS = 60
# What a PaymentIntent's status means for our authorization (other statuses change nothing).
PI_STATUS = {
    "requires_action": AuthorizationStatus.REQUIRES_ACTION,
    "requires_capture": AuthorizationStatus.AUTHORIZED,
    "succeeded": AuthorizationStatus.CAPTURED,
    "canceled": AuthorizationStatus.CANCELED,
    "requires_payment_method": AuthorizationStatus.FAILED,
}


@dataclass(frozen=True)
class AuthorizationOutcome:
    authorization: Authorization
    created: bool
    client_secret: str | None = None  # only while 3-D Secure is pending; never stored


# --- Redis set read by the queue's join script ---------------------------------------------------


def _authorized_set_sync(authorization: Authorization) -> None:
    """Keep the shopper in the drop's authorized hash (with the card's fingerprint) exactly while ``authorized``.

    The queue's join script reads it: no entry without a hold, and a limited number of
    entries per card.
    """
    key = authorized_key(authorization.drop_id)
    if authorization.status == AuthorizationStatus.AUTHORIZED:
        redis_client().hset(key, authorization.shopper_id, authorization.card_fingerprint or "")
    else:
        redis_client().hdel(key, authorization.shopper_id)


def authorized_rebuild(*, drop_id: int) -> int:
    """Write the join's view of card holds (shopper -> card fingerprint) back to Redis from the database.

    For a drop whose Redis keys were lost; returns how many shoppers hold an authorized card.
    """
    holds = dict(
        Authorization.objects.filter(drop_id=drop_id, status=AuthorizationStatus.AUTHORIZED).values_list(
            "shopper_id", "card_fingerprint"
        )
    )
    key = authorized_key(drop_id)
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(key)
    if holds:
        pipe.hset(key, mapping={shopper: fingerprint or "" for shopper, fingerprint in holds.items()})
    pipe.execute()
    return len(holds)


def authorization_transition(
    *, authorization: Authorization, to: AuthorizationStatus, frm: tuple[str, ...], **fields: object
) -> bool:
    """Move the authorization to ``to`` if it is in one of ``frm`` (a conditional UPDATE); True if it moved."""
    now = timezone.now()
    updated = Authorization.objects.filter(pk=authorization.pk, status__in=frm).update(
        status=to, updated_at=now, **fields
    )
    if updated:
        authorization.status = to
        for name, value in fields.items():
            setattr(authorization, name, value)
        transaction.on_commit(lambda: _authorized_set_sync(authorization))
    return bool(updated)


# --- Reads -----------------------------------------------------------------------------------------


def authorization_open_get(*, drop_id: int, shopper_id: int) -> Authorization | None:
    """Return the shopper's authorization that still counts (not canceled or failed) for the drop."""
    return (
        Authorization.objects.filter(drop_id=drop_id, shopper_id=shopper_id)
        .exclude(status__in=[AuthorizationStatus.CANCELED, AuthorizationStatus.FAILED])
        .first()
    )


# --- Create ----------------------------------------------------------------------------------------


def authorization_amount(*, drop: Drop) -> Decimal:
    """Return the hold's amount: price x per-customer limit."""
    return drop.product.price * drop.per_customer_limit


def authorization_authorize(*, drop: Drop, shopper, payment_method: str) -> AuthorizationOutcome:
    """Hold price x per-customer limit on the shopper's card for the drop, once.

    Returns the existing authorization (``created=False``) when one still counts; raises
    ``DropNotOpen``, ``DropClosed``, ``CardDeclined``, ``InvalidPaymentMethod``,
    ``PaymentsBusy``, ``PaymentsUnavailable`` or ``AuthorizationInProgress``.
    """
    existing = authorization_open_get(drop_id=drop.pk, shopper_id=shopper.pk)
    if existing is not None:
        _authorized_set_sync(existing)  # asking again also repairs the join's view, should Redis have lost it
        return AuthorizationOutcome(existing, created=False, client_secret=authorization_client_secret(existing))
    state = drop_state_get(drop=drop)
    if state in (DropState.ENDED, DropState.SOLD_OUT):
        raise DropClosed
    if state is DropState.SCHEDULED:
        raise DropNotOpen
    with shopper_lock(drop_id=drop.pk, shopper_id=shopper.pk, purpose="auth", error=AuthorizationInProgress):
        existing = authorization_open_get(drop_id=drop.pk, shopper_id=shopper.pk)
        if existing is not None:
            return AuthorizationOutcome(existing, created=False, client_secret=authorization_client_secret(existing))
        return _authorize(drop=drop, shopper=shopper, payment_method=payment_method)


def _authorize(*, drop: Drop, shopper, payment_method: str) -> AuthorizationOutcome:
    customer_id = StripeCustomer.objects.filter(shopper=shopper).values_list("customer_id", flat=True).first()
    # Every call this needs is paid for up front, so a busy bucket leaves nothing half done.
    stripe_tokens_take(count=2 if customer_id else 3)
    if customer_id is None:
        customer_id = _customer_create(shopper=shopper)
    client = stripe_client()
    attempt = (Authorization.objects.filter(drop=drop, shopper=shopper).aggregate(last=Max("attempt"))["last"] or 0) + 1
    amount = authorization_amount(drop=drop)
    currency = drop.product.currency
    base = {"drop": drop, "shopper": shopper, "attempt": attempt, "amount": amount, "currency": currency}
    try:
        # Attaching saves the card on the shopper's customer and tells its brand, last4 and fingerprint.
        method = client.v1.payment_methods.attach(
            payment_method,
            params={"customer": customer_id},
            options={"idempotency_key": f"attach:{customer_id}:{payment_method}"},
        )
    except stripe.CardError as exc:
        _authorization_failed_save(**base, failure_code=exc.code or "card_declined")
        raise CardDeclined from None
    except stripe.InvalidRequestError:
        raise InvalidPaymentMethod from None
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("attaching a card for shopper %s failed: %s", shopper.pk, exc)
        raise PaymentsUnavailable from None
    card = method.card
    base.update(card_brand=card.brand or "", card_last4=card.last4 or "", card_fingerprint=card.fingerprint or "")
    try:
        intent = client.v1.payment_intents.create(
            params={
                "amount": to_minor_units(amount, currency),
                "currency": currency,
                "customer": customer_id,
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "capture_method": "manual",
                "confirm": True,
                "metadata": {"drop_id": str(drop.pk), "shopper_id": str(shopper.pk), "attempt": str(attempt)},
            },
            options={"idempotency_key": f"auth:{drop.pk}:{shopper.pk}:{attempt}"},
        )
    except stripe.CardError as exc:
        intent_id = ((exc.json_body or {}).get("error") or {}).get("payment_intent", {}).get("id")
        _authorization_failed_save(**base, failure_code=exc.code or "card_declined", payment_intent_id=intent_id)
        raise CardDeclined from None
    except stripe.InvalidRequestError:
        raise InvalidPaymentMethod from None
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("authorizing shopper %s on drop %s failed: %s", shopper.pk, drop.pk, exc)
        raise PaymentsUnavailable from None
    status = PI_STATUS.get(intent.status, AuthorizationStatus.FAILED)
    authorization = Authorization.objects.create(
        **base,
        status=status,
        payment_intent_id=intent.id,
        capture_before=timezone.now() + timedelta(days=settings.PAYMENTS_HOLD_DAYS),
        failure_code="" if status != AuthorizationStatus.FAILED else f"intent_{intent.status}",
    )
    _authorized_set_sync(authorization)
    if status == AuthorizationStatus.FAILED:
        raise CardDeclined
    secret = intent.client_secret if status == AuthorizationStatus.REQUIRES_ACTION else None
    return AuthorizationOutcome(authorization, created=True, client_secret=secret)


def _authorization_failed_save(**fields: object) -> Authorization:
    return Authorization.objects.create(status=AuthorizationStatus.FAILED, **fields)


def _customer_create(*, shopper) -> str:
    """Create the shopper's Stripe Customer (its token already taken) and remember it."""
    try:
        customer = stripe_client().v1.customers.create(
            params={"email": shopper.email or None, "metadata": {"shopper_id": str(shopper.pk)}},
            options={"idempotency_key": f"customer:{shopper.pk}"},
        )
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("creating the Stripe customer of shopper %s failed: %s", shopper.pk, exc)
        raise PaymentsUnavailable from None
    try:
        with transaction.atomic():
            StripeCustomer.objects.create(shopper=shopper, customer_id=customer.id)
    except IntegrityError:
        return StripeCustomer.objects.get(shopper=shopper).customer_id
    return customer.id


def authorization_client_secret(authorization: Authorization) -> str | None:
    """Refresh a hold waiting for 3-D Secure from Stripe; return its client secret while it still waits.

    Stripe (and localstripe, which sends no event when 3-D Secure succeeds) is asked
    directly, so the answer does not wait for a webhook.
    """
    if authorization.status != AuthorizationStatus.REQUIRES_ACTION or not authorization.payment_intent_id:
        return None
    stripe_tokens_take(count=1)
    try:
        intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("reading payment intent %s failed: %s", authorization.payment_intent_id, exc)
        raise PaymentsUnavailable from None
    authorization_sync(authorization=authorization, intent_status=intent.status)
    return intent.client_secret if authorization.status == AuthorizationStatus.REQUIRES_ACTION else None


def authorization_sync(*, authorization: Authorization, intent_status: str, **fields: object) -> bool:
    """Bring the authorization in step with its PaymentIntent's status; True when it changed."""
    target = PI_STATUS.get(intent_status)
    if target is None or target == authorization.status:
        return False
    allowed = {
        AuthorizationStatus.AUTHORIZED: (AuthorizationStatus.REQUIRES_ACTION,),
        AuthorizationStatus.REQUIRES_ACTION: (),
        AuthorizationStatus.CAPTURED: OPEN_STATUSES,
        AuthorizationStatus.CANCELED: OPEN_STATUSES,
        AuthorizationStatus.FAILED: (AuthorizationStatus.REQUIRES_ACTION,),
    }[target]
    if target == AuthorizationStatus.FAILED:
        fields.setdefault("failure_code", "authentication_failed")
    return authorization_transition(authorization=authorization, to=target, frm=allowed, **fields)


# --- Capture ---------------------------------------------------------------------------------------


def authorization_capture(*, authorization: Authorization, order: Order) -> None:
    """Capture the order's amount from the hold (its token already taken); raise ``PaymentFailed``.

    A capture Stripe refused fails the authorization; one that timed out is checked
    again by a task, which refunds it if Stripe did capture after all.
    """
    from .. import tasks  # tasks import the services

    try:
        intent = stripe_client().v1.payment_intents.capture(
            authorization.payment_intent_id,
            params={"amount_to_capture": to_minor_units(order.amount, order.currency)},
            options={"idempotency_key": f"capture:{order.pk}"},
        )
    except (stripe.CardError, stripe.InvalidRequestError) as exc:
        logger.info("capture of order %s refused by Stripe: %s", order.pk, exc)
        authorization_transition(
            authorization=authorization,
            to=AuthorizationStatus.FAILED,
            frm=OPEN_STATUSES,
            failure_code="capture_refused",
        )
        raise PaymentFailed from None
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("capture of order %s did not answer: %s", order.pk, exc)
        authorization_transition(
            authorization=authorization,
            to=AuthorizationStatus.FAILED,
            frm=OPEN_STATUSES,
            failure_code="capture_timeout",
        )
        transaction.on_commit(lambda: tasks.authorization_reconcile.delay(authorization.pk, order.pk))
        raise PaymentFailed from None
    if intent.status != "succeeded":
        authorization_transition(
            authorization=authorization,
            to=AuthorizationStatus.FAILED,
            frm=OPEN_STATUSES,
            failure_code=f"intent_{intent.status}",
        )
        raise PaymentFailed
    authorization_transition(
        authorization=authorization,
        to=AuthorizationStatus.CAPTURED,
        frm=OPEN_STATUSES,
        amount_captured=from_minor_units(to_minor_units(order.amount, order.currency), order.currency),
    )


def _capture_failed(authorization: Authorization, failure_code: str) -> None:
    authorization_transition(
        authorization=authorization, to=AuthorizationStatus.FAILED, frm=OPEN_STATUSES, failure_code=failure_code
    )


# --- Locks -----------------------------------------------------------------------------------------


@contextmanager
def shopper_lock(*, drop_id: int, shopper_id: int, purpose: str, error: type[Exception]) -> Iterator[None]:
    """Hold a short Redis lock for one shopper's step on one drop, or raise ``error`` when it is taken."""
    lock = redis_client().lock(shopper_lock_key(drop_id, shopper_id, purpose), timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        raise error
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("lock %s for shopper %s on drop %s expired before release", purpose, shopper_id, drop_id)
