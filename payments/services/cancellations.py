"""Cancel card holds nobody will capture: losers after a sell-out or the end, expired admissions, old holds.

Each cancellation is one Stripe call taken from the shared bucket as background work, so
the pipeline runs at the allowed rate and always leaves a token for a shopper's capture.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inventory.models import Drop, DropState, Order, OrderStatus
from inventory.selectors import drop_state_get, stock_get

from ..errors import PaymentsBusy
from ..models import OPEN_STATUSES, Authorization, AuthorizationStatus, Refund
from ..stripe_client import from_minor_units, idempotency_key, stripe_client, stripe_tokens_take, to_minor_units
from .authorizations import (
    LIVE_STATUSES,
    authorization_sync,
    authorization_transition,
    authorizations_release_scheduled,
)

logger = logging.getLogger(__name__)

ABANDONED = "abandoned"
BATCH = 200


@dataclass(frozen=True)
class CancelBatch:
    canceled: int
    more: bool  # open authorizations are left
    wait_ms: int  # when to continue (0: now)


def _intent_cancel(authorization: Authorization, *, reason: str = ABANDONED):
    """One cancel call at Stripe for the hold, with its key ``cancel:{id}`` (localstripe takes no reason)."""
    params = {} if settings.STRIPE_LOCALSTRIPE else {"cancellation_reason": reason}
    return stripe_client().v1.payment_intents.cancel(
        authorization.payment_intent_id,
        params=params,
        options={"idempotency_key": idempotency_key("cancel", authorization)},
    )


def authorization_cancel(*, authorization_id: int, reason: str = ABANDONED) -> bool:
    """Cancel one open hold at Stripe and here (its token already taken); True when it was canceled now.

    Raises ``PaymentsBusy`` when Stripe refused the cancel and no token is left to read why.

    Idempotent: a hold that is no longer open changes nothing; the key ``cancel:{id}`` makes
    a repeated call to Stripe answer like the first.
    """
    authorization = Authorization.objects.filter(pk=authorization_id, status__in=OPEN_STATUSES).first()
    if authorization is None:
        return False
    try:
        intent = _intent_cancel(authorization, reason=reason)
    except stripe.InvalidRequestError as exc:
        # Not cancelable any more (captured or canceled elsewhere): read what it became.
        logger.info("cancel of authorization %s refused: %s; reading its payment intent", authorization.pk, exc)
        stripe_tokens_take(background=True)
        intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
        authorization_sync(authorization=authorization, intent_status=intent.status)
        return False
    if intent.status != "canceled":
        authorization_sync(authorization=authorization, intent_status=intent.status)
        return False
    return authorization_transition(
        authorization=authorization, to=AuthorizationStatus.CANCELED, frm=OPEN_STATUSES, cancellation_reason=reason
    )


def authorization_void(*, authorization_id: int, reason: str) -> str:
    """Cancel at Stripe a hold we already refused (failed here, e.g. a card over its accounts limit), its token
    already taken; return the PaymentIntent's status. The key ``cancel:{id}`` makes a repeat answer alike."""
    authorization = Authorization.objects.get(pk=authorization_id)
    if not authorization.payment_intent_id:
        return "none"
    try:
        intent = _intent_cancel(authorization)
    except stripe.InvalidRequestError as exc:
        logger.info("void of authorization %s (%s) refused: %s", authorization.pk, reason, exc)
        return "not_cancelable"
    return intent.status


def drop_authorizations_cancel(
    *, drop_id: int, reason: str = ABANDONED, budget_seconds: float | None = None
) -> CancelBatch:
    """Cancel the drop's open holds at the allowed rate until the bucket runs dry or the time budget ends.

    Never sleeps: the result says whether to continue and after how long.
    """
    budget = settings.PAYMENTS_CANCEL_BATCH_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    # Cards whose hold was never placed cost no Stripe call: they are let go at once.
    canceled = authorizations_release_scheduled(drop_id=drop_id)
    while True:
        ids = list(
            Authorization.objects.filter(drop_id=drop_id, status__in=OPEN_STATUSES)
            .order_by("pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        if not ids:
            return CancelBatch(canceled=canceled, more=False, wait_ms=0)
        for authorization_id in ids:
            if time.monotonic() >= deadline:
                return CancelBatch(canceled=canceled, more=True, wait_ms=0)
            try:
                stripe_tokens_take(background=True)
                canceled += authorization_cancel(authorization_id=authorization_id, reason=reason)
            except PaymentsBusy as busy:
                return CancelBatch(canceled=canceled, more=True, wait_ms=busy.wait_ms)


def drop_holds_releasable(*, drop: Drop) -> bool:
    """Tell whether nobody can capture the drop's holds any more: it ended, or every unit is paid."""
    stock = stock_get(drop=drop)
    state = drop_state_get(drop=drop, stock=stock)
    if state is DropState.ENDED:
        return True
    # Pending orders or held units may still fail and come back on sale to the next shopper.
    return state is DropState.SOLD_OUT and stock.pending == 0 and stock.held == 0


def drops_with_releasable_holds() -> list[int]:
    """Return the ids of drops that are over and still have open holds."""
    drop_ids = set(Authorization.objects.filter(status__in=LIVE_STATUSES).values_list("drop_id", flat=True).distinct())
    drops = Drop.objects.select_related("product").filter(pk__in=drop_ids)
    return [drop.pk for drop in drops if drop_holds_releasable(drop=drop)]


def authorizations_near_deadline(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Return open holds whose capture deadline falls within the safety margin."""
    now = now or timezone.now()
    edge = now + timedelta(hours=settings.PAYMENTS_CANCEL_MARGIN_HOURS)
    return list(
        Authorization.objects.filter(status__in=OPEN_STATUSES, capture_before__lte=edge)
        .order_by("capture_before")
        .values_list("pk", flat=True)[:limit]
    )


def authorization_cancel_for_shopper(*, drop_id: int, shopper_id: int) -> bool:
    """Schedule the cancellation of the shopper's open hold on the drop (their admission expired).

    Returns whether there was one. The call to Stripe runs in a task at the allowed rate.
    """
    return authorizations_cancel_for_shoppers(drop_id=drop_id, shopper_ids=[shopper_id]) > 0


def authorizations_cancel_for_shoppers(*, drop_id: int, shopper_ids: list[int]) -> int:
    """Schedule the cancellation of these shoppers' open holds on the drop (one query); return how many."""
    from .. import tasks  # tasks import the services

    authorizations_release_scheduled(drop_id=drop_id, shopper_ids=shopper_ids)
    authorization_ids = list(
        Authorization.objects.filter(drop_id=drop_id, shopper_id__in=shopper_ids, status__in=OPEN_STATUSES)
        .values_list("pk", flat=True)
        .order_by("pk")
    )
    for authorization_id in authorization_ids:
        transaction.on_commit(lambda a=authorization_id: tasks.authorization_cancel.delay(a, ABANDONED))
    return len(authorization_ids)


def authorization_reconcile_after_capture(*, authorization_id: int, order_id: int) -> str:
    """Settle a hold whose capture did not answer, for an order that failed: never keep the money.

    Still capturable: cancel it at Stripe now (key ``cancel:{id}``), whatever our own record says
    (the timeout already marked it failed), so a capture still on its way finds nothing to take.
    Captured after all: refund what was captured (key ``refund:stray:{order}``). Returns what it did.
    """
    authorization = Authorization.objects.get(pk=authorization_id)
    order = Order.objects.get(pk=order_id)
    if order.status == OrderStatus.PAID:
        return "paid"
    stripe_tokens_take(background=True)
    intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
    if intent.status == "requires_capture":
        stripe_tokens_take(background=True)
        try:
            intent = _intent_cancel(authorization)
        except stripe.InvalidRequestError:
            stripe_tokens_take(background=True)  # the late capture won the race: read it, then refund below
            intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
        if intent.status == "canceled":
            authorization_transition(
                authorization=authorization, to=AuthorizationStatus.CANCELED,
                frm=(*OPEN_STATUSES, AuthorizationStatus.FAILED), cancellation_reason=ABANDONED,
            )  # fmt: skip
            return "canceled"
    if intent.status == "succeeded":
        stray_capture_refund(authorization=authorization, order=order)
        return "refunded"
    authorization_transition(
        authorization=authorization, to=AuthorizationStatus.FAILED, frm=(AuthorizationStatus.FAILED,),
        failure_code=f"intent_{intent.status}",
    )  # fmt: skip
    return intent.status


def stray_capture_refund(*, authorization: Authorization, order: Order) -> Refund:
    """Give back money captured for an order that is not paid (its token taken here), and record it.

    The authorization is recorded as captured and the refund as a ``Refund`` of the order, so that
    what Stripe captured always equals paid orders plus refunds. Idempotent (key ``refund:stray``).
    """
    amount = from_minor_units(to_minor_units(order.amount, order.currency), order.currency)
    stripe_tokens_take(background=True)
    refund = stripe_client().v1.refunds.create(
        params={"payment_intent": authorization.payment_intent_id,
                "amount": to_minor_units(order.amount, order.currency)},
        options={"idempotency_key": idempotency_key("refund:stray", order)},
    )  # fmt: skip
    with transaction.atomic():
        authorization_transition(
            authorization=authorization, to=AuthorizationStatus.CAPTURED,
            frm=(*OPEN_STATUSES, AuthorizationStatus.FAILED), amount_captured=amount,
        )  # fmt: skip
        record, _ = Refund.objects.get_or_create(
            refund_id=refund.id,
            defaults={"order": order, "authorization": authorization, "amount": amount,
                      "currency": order.currency, "status": refund.status or "succeeded"},
        )  # fmt: skip
    logger.warning("refunded payment intent %s captured for unpaid order %s", authorization.payment_intent_id, order.pk)
    return record


def authorization_intent_status(*, authorization: Authorization) -> str:
    """Ask Stripe what became of the hold (its token already taken): ``succeeded`` when captured."""
    return stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id).status


def authorization_captured_record(*, authorization: Authorization, order: Order) -> bool:
    """Record a capture Stripe made (found after a crash) for the order; True when it changed the record."""
    amount = from_minor_units(to_minor_units(order.amount, order.currency), order.currency)
    return authorization_transition(
        authorization=authorization, to=AuthorizationStatus.CAPTURED,
        frm=(*OPEN_STATUSES, AuthorizationStatus.FAILED), amount_captured=amount,
    )  # fmt: skip
