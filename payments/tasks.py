"""Celery entry points of payments: take ids, re-fetch, call a service.

Every task is idempotent. Stripe network errors retry with backoff; an empty rate-limit
bucket retries (or continues) after the wait the bucket named, never by sleeping.
"""

from __future__ import annotations

import logging

import stripe
from celery import shared_task
from django.conf import settings
from redis.exceptions import LockError

from flashsale.redis import redis_client
from inventory.models import Drop

from . import services
from .errors import PaymentsBusy
from .redis_keys import cancel_chain_lock_key
from .stripe_client import STRIPE_NETWORK_ERRORS, stripe_tokens_take

logger = logging.getLogger(__name__)

RETRYABLE = (*STRIPE_NETWORK_ERRORS, stripe.APIError)
STRIPE_TASK = {
    "ignore_result": True,
    "acks_late": True,
    "autoretry_for": RETRYABLE,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 12,
    "soft_time_limit": 45,
    "time_limit": 60,
}


@shared_task(bind=True, **STRIPE_TASK)
def authorization_cancel(self, authorization_id: int, reason: str = services.cancellations.ABANDONED) -> bool:
    """Cancel one open hold at the allowed rate (expired admission, capture deadline)."""
    try:
        stripe_tokens_take(background=True)
        return services.authorization_cancel(authorization_id=authorization_id, reason=reason)
    except PaymentsBusy as busy:
        raise self.retry(countdown=busy.wait_ms / 1000, max_retries=None) from None


@shared_task(bind=True, **STRIPE_TASK)
def hold_void(self, authorization_id: int, reason: str) -> str:
    """Cancel at Stripe a hold we refused after it was placed (card over its accounts limit), at the allowed rate."""
    try:
        stripe_tokens_take(background=True)
        return services.authorization_void(authorization_id=authorization_id, reason=reason)
    except PaymentsBusy as busy:
        raise self.retry(countdown=busy.wait_ms / 1000, max_retries=None) from None


@shared_task(bind=True, **STRIPE_TASK)
def drop_authorizations_release(self, drop_id: int) -> int:
    """Cancel every open hold of a drop that sold out or ended, at the allowed rate; returns how many now.

    One chain runs per drop (a Redis lock); each run works for a bounded time and hands over
    to its continuation after the wait the bucket asks for.
    """
    drop = Drop.objects.select_related("product").filter(pk=drop_id).first()
    if drop is None or not services.drop_holds_releasable(drop=drop):
        return 0
    # The lock outlives a run's time budget by a margin; if the worker dies mid-run, the chain can be
    # started again (by the beat's next cancel_due) once it expires.
    lock_seconds = settings.PAYMENTS_CANCEL_BATCH_SECONDS + 10
    lock = redis_client().lock(cancel_chain_lock_key(drop_id), timeout=lock_seconds, blocking=False)
    if not lock.acquire():
        return 0  # another run of the chain is at work and continues itself
    try:
        batch = services.drop_authorizations_cancel(drop_id=drop_id)
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("cancel chain lock of drop %s expired during a run", drop_id)
    if batch.more:
        drop_authorizations_release.apply_async((drop_id,), countdown=batch.wait_ms / 1000)
    logger.info("drop %s: canceled %s holds; more left: %s", drop_id, batch.canceled, batch.more)
    return batch.canceled


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def authorizations_cancel_due() -> dict[str, int]:
    """Start the cancellation of holds nobody will capture (beat, every 30 s)."""
    drop_ids = services.drops_with_releasable_holds()
    for drop_id in drop_ids:
        drop_authorizations_release.delay(drop_id)
    near = services.authorizations_near_deadline()
    for authorization_id in near:
        authorization_cancel.delay(authorization_id, services.cancellations.ABANDONED)
    return {"drops": len(drop_ids), "near_deadline": len(near)}


@shared_task(bind=True, **STRIPE_TASK)
def authorization_reconcile(self, authorization_id: int, order_id: int) -> str:
    """After a capture that did not answer (or came too late): make sure no money is kept for an unpaid order."""
    try:
        return services.authorization_reconcile_after_capture(authorization_id=authorization_id, order_id=order_id)
    except PaymentsBusy as busy:
        raise self.retry(countdown=busy.wait_ms / 1000, max_retries=None) from None
