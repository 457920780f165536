"""Celery entry points of the checkout: take ids, re-fetch, call a service.

Admission ticks and the hold scheduler run on their own queues (``ticks``, ``holds``), served by their
own worker in production (Procfile ``ticker``): Stripe's cancellation chains on the default queue can
never delay the one-second tick. Each expires before the next beat would send it again.
"""

from celery import shared_task

from inventory.models import Drop
from payments import services as payment_services

from . import services


@shared_task(ignore_result=True, soft_time_limit=5, time_limit=10, expires=5)
def queue_tick_all() -> dict[str, int]:
    """Admit shoppers of every live drop (beat, every second; the tick script makes it exactly-once)."""
    return services.drops_tick_all()


@shared_task(ignore_result=True, soft_time_limit=10, time_limit=15, expires=5)
def holds_place_all() -> dict[str, int]:
    """Place the card holds of the shoppers next in line, at the shared Stripe rate (beat, every second)."""
    return services.holds_place_all()


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30, expires=5)
def queue_save_all() -> dict[str, int]:
    """Save queue entries in batches and rebuild drops whose Redis keys were lost (beat, every second)."""
    return services.queue_save_all()


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, expires=10)
def purchases_settle() -> dict[str, int]:
    """Finish purchases that stopped between their order and being paid: paid, failed or refunded (beat, 10 s)."""
    run = services.purchases_settle()
    return {"paid": run.paid, "failed": run.failed, "refunded": run.refunded, "reconciled": run.reconciled}


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=270, expires=60)
def drops_redis_release_due() -> dict[str, int]:
    """Delete the Redis keys of drops closed for DROP_REDIS_KEEP_SECONDS, their queue saved (beat, 5 min)."""
    return services.drops_redis_release_due()


@shared_task(
    ignore_result=True,
    soft_time_limit=30,
    time_limit=60,
    acks_late=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=10,
)
def admissions_expired_release(drop_id: int, shopper_ids: list[int]) -> None:
    """Cancel the card holds of shoppers whose checkout window closed unused or who passed their turn
    (idempotent; a tick sends one per ``EXPIRED_RELEASE_BATCH`` shoppers)."""
    if Drop.objects.filter(pk=drop_id).exists():
        releasable = services.holds_releasable_after_admission(drop_id=drop_id, shopper_ids=shopper_ids)
        payment_services.authorizations_cancel_for_shoppers(drop_id=drop_id, shopper_ids=releasable)
