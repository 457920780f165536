"""Card holds: the card a shopper gives before the queue, and its hold placed in queue order.

Giving the card (``authorization_schedule``) calls nobody: the card is kept for the drop. Its hold
(``authorization_place``, one PaymentIntent with ``confirm=True`` and manual capture) is placed by
the hold scheduler when the shopper's turn comes near, at the shared Stripe rate. Stripe calls take
their tokens from the shared bucket first; the deterministic idempotency keys (``hold:{authorization}``,
``capture:{order}``, ``cancel:{authorization}``) make a retried call return what the first one did.
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
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import LockError

from flashsale.redis import redis_client
from inventory.models import Drop, DropState, Order
from inventory.selectors import drop_state_quick

from ..errors import DropClosed, DropNotOpen, PaymentFailed, PaymentsBusy, PaymentsUnavailable
from ..models import OPEN_STATUSES, Authorization, AuthorizationStatus
from ..redis_keys import client_secret_key, shopper_lock_key
from ..stripe_client import (
    STRIPE_NETWORK_ERRORS,
    from_minor_units,
    idempotency_key,
    stripe_client,
    stripe_tokens_take,
    to_minor_units,
)

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
# Authorizations that still count for the shopper: a card given, a hold placed or waiting for 3-D Secure.
LIVE_STATUSES = (AuthorizationStatus.SCHEDULED, *OPEN_STATUSES)


@dataclass(frozen=True)
class AuthorizationOutcome:
    authorization: Authorization
    created: bool
    client_secret: str | None = None  # only while 3-D Secure is pending


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
    return bool(updated)


# --- Reads -----------------------------------------------------------------------------------------


def authorization_open_get(*, drop_id: int, shopper_id: int) -> Authorization | None:
    """Return the shopper's authorization that still counts (scheduled, placed or waiting for 3-D Secure)."""
    return Authorization.objects.filter(drop_id=drop_id, shopper_id=shopper_id, status__in=LIVE_STATUSES).first()


def authorization_amount(*, drop: Drop) -> Decimal:
    """Return the hold's amount: price x per-customer limit."""
    return drop.product.price * drop.per_customer_limit


# --- The card step ---------------------------------------------------------------------------------


def authorization_schedule(*, drop: Drop, shopper, payment_method: str) -> AuthorizationOutcome:
    """Keep the shopper's card for the drop; its hold is placed later, in queue order. No Stripe call.

    Returns the authorization that still counts (``created=False``) when there is one; a shopper
    whose last hold failed gives another card here. Raises ``DropNotOpen`` or ``DropClosed``.
    """
    earlier = list(Authorization.objects.filter(drop=drop, shopper=shopper).order_by("attempt"))
    existing = next((a for a in earlier if a.status in LIVE_STATUSES), None)
    if existing is not None:
        return AuthorizationOutcome(existing, created=False, client_secret=authorization_client_secret(existing))
    state = drop_state_quick(drop=drop)
    if state in (DropState.ENDED, DropState.SOLD_OUT):
        raise DropClosed
    if state is DropState.SCHEDULED:
        raise DropNotOpen
    attempt = (earlier[-1].attempt if earlier else 0) + 1
    try:
        with transaction.atomic():
            authorization = Authorization.objects.create(
                drop=drop,
                shopper=shopper,
                attempt=attempt,
                status=AuthorizationStatus.SCHEDULED,
                payment_method_id=payment_method,
                amount=authorization_amount(drop=drop),
                currency=drop.product.currency,
            )
    except IntegrityError:  # the same shopper's concurrent request won (one live authorization, one attempt)
        existing = authorization_open_get(drop_id=drop.pk, shopper_id=shopper.pk)
        if existing is None:
            raise
        return AuthorizationOutcome(existing, created=False)
    return AuthorizationOutcome(authorization, created=True)


# --- The hold, placed by the scheduler -------------------------------------------------------------


def authorization_placing_claim(*, authorization_id: int) -> Authorization | None:
    """Claim a scheduled hold for placing (a conditional UPDATE); None when another placer holds a fresh claim.

    A claim older than ``HOLDS_PLACING_STALE_SECONDS`` is taken over: its placer died, and placing again
    with the same idempotency key gets Stripe's first answer, so no hold is placed twice.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.HOLDS_PLACING_STALE_SECONDS)
    claimed = Authorization.objects.filter(
        Q(placing_since__isnull=True) | Q(placing_since__lt=stale),
        pk=authorization_id,
        status=AuthorizationStatus.SCHEDULED,
    ).update(placing_since=now)
    if not claimed:
        return None
    return Authorization.objects.select_related("drop__product").get(pk=authorization_id)


def authorization_place(*, authorization: Authorization) -> Authorization:
    """Place the claimed hold: one PaymentIntent, confirmed, manual capture (its token already taken).

    Returns the authorization, now ``authorized``, ``requires_action`` (3-D Secure: the shopper
    finishes it on the page) or ``failed`` (declined, or a card Stripe does not know, with the
    reason in ``failure_code``). Raises ``PaymentsUnavailable`` when Stripe did not answer: the
    authorization stays scheduled and is placed again (same key) on a later run.
    """
    drop = authorization.drop
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": to_minor_units(authorization.amount, authorization.currency),
                "currency": authorization.currency,
                "payment_method": authorization.payment_method_id,
                "payment_method_types": ["card"],
                "capture_method": "manual",
                "confirm": True,
                "expand": ["payment_method"],
                "metadata": {
                    "authorization_id": str(authorization.pk),
                    "drop_id": str(drop.pk),
                    "shopper_id": str(authorization.shopper_id),
                    "attempt": str(authorization.attempt),
                },
            },
            options={"idempotency_key": idempotency_key("hold", authorization)},
        )
    except stripe.CardError as exc:
        error = (exc.json_body or {}).get("error") or {}
        code = error.get("decline_code") or exc.code or "card_declined"
        _placed(authorization, AuthorizationStatus.FAILED, failure_code=code,
                payment_intent_id=(error.get("payment_intent") or {}).get("id"))  # fmt: skip
        return authorization
    except stripe.InvalidRequestError as exc:
        # A card Stripe does not know (made under another account, or a test server that restarted):
        # the shopper gives another one.
        logger.info("hold %s refused by Stripe: %s", authorization.pk, exc)
        _placed(authorization, AuthorizationStatus.FAILED, failure_code="payment_method_unknown")
        return authorization
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("placing hold %s did not answer: %s", authorization.pk, exc)
        Authorization.objects.filter(pk=authorization.pk).update(placing_since=None)
        raise PaymentsUnavailable from None
    status = PI_STATUS.get(intent.status, AuthorizationStatus.FAILED)
    method = intent.payment_method
    card = getattr(method, "card", None)
    fields: dict[str, object] = {"payment_intent_id": intent.id}
    if card is not None:
        fields.update(card_brand=card.brand or "", card_last4=card.last4 or "", card_fingerprint=card.fingerprint or "")
    if status == AuthorizationStatus.FAILED:
        fields["failure_code"] = f"intent_{intent.status}"
    if status == AuthorizationStatus.REQUIRES_ACTION:
        _client_secret_keep(authorization, intent.client_secret)
    _placed(authorization, status, **fields)
    return authorization


def _placed(authorization: Authorization, status: AuthorizationStatus, **fields: object) -> None:
    fields.setdefault("capture_before", timezone.now() + timedelta(days=settings.PAYMENTS_HOLD_DAYS))
    authorization_transition(
        authorization=authorization, to=status, frm=(AuthorizationStatus.SCHEDULED,), placing_since=None, **fields
    )


def card_accounts_count(*, drop_id: int, fingerprint: str, excluding: int) -> int:
    """How many other shoppers hold (or held and paid with) this card on the drop."""
    return (
        Authorization.objects.filter(
            drop_id=drop_id,
            card_fingerprint=fingerprint,
            status__in=[*OPEN_STATUSES, AuthorizationStatus.CAPTURED],
        )
        .exclude(shopper_id=excluding)
        .values("shopper_id")
        .distinct()
        .count()
    )


def authorizations_release_scheduled(*, drop_id: int, shopper_ids: list[int] | None = None) -> int:
    """Let go of cards whose hold was never placed (nothing to cancel at Stripe); return how many."""
    scheduled = Authorization.objects.filter(drop_id=drop_id, status=AuthorizationStatus.SCHEDULED)
    if shopper_ids is not None:
        scheduled = scheduled.filter(shopper_id__in=shopper_ids)
    return scheduled.update(status=AuthorizationStatus.CANCELED, cancellation_reason="released",
                            updated_at=timezone.now())  # fmt: skip


# --- 3-D Secure ------------------------------------------------------------------------------------


def _client_secret_keep(authorization: Authorization, secret: str | None) -> None:
    """Keep the client secret of a hold waiting for 3-D Secure for a while (never in the database)."""
    if secret:
        cache.set(client_secret_key(authorization.pk), secret, timeout=settings.PAYMENTS_CLIENT_SECRET_SECONDS)


def authorization_client_secret(authorization: Authorization) -> str | None:
    """Return the client secret of a hold waiting for 3-D Secure, first asking Stripe whether it still waits.

    Stripe (and localstripe, which sends no event when 3-D Secure succeeds) is asked directly, so
    the answer does not wait for a webhook; as background work, so it never takes a capture's
    token. When the budget is spent, the last known state is the answer (never a 503).
    """
    if authorization.status != AuthorizationStatus.REQUIRES_ACTION or not authorization.payment_intent_id:
        return None
    try:
        stripe_tokens_take(background=True)
        intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
    except PaymentsBusy:
        return cache.get(client_secret_key(authorization.pk))
    except (*STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        logger.warning("reading payment intent %s failed: %s", authorization.payment_intent_id, exc)
        return cache.get(client_secret_key(authorization.pk))
    authorization_sync(authorization=authorization, intent_status=intent.status)
    if authorization.status != AuthorizationStatus.REQUIRES_ACTION:
        return None
    _client_secret_keep(authorization, intent.client_secret)
    return intent.client_secret


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
            options={"idempotency_key": idempotency_key("capture", order)},
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


# --- Locks -----------------------------------------------------------------------------------------


def purchase_lock_key(drop_id: int, shopper_id: int) -> str:
    """The Redis key of the lock a purchase holds while it runs."""
    return shopper_lock_key(drop_id, shopper_id, "purchase")


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
