"""Celery entry points of the waiting room: take ids, re-fetch, call a service."""

from celery import shared_task

from inventory.models import Drop

from . import persistence, services


@shared_task(ignore_result=True, soft_time_limit=5, time_limit=10)
def queue_tick_all() -> dict[str, int]:
    """Admit shoppers of every live drop (beat, every second; the tick script makes it exactly-once)."""
    return services.queue_tick_all()


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
    """Cancel the card holds of shoppers whose checkout window closed unused (idempotent; a tick sends one
    per ``EXPIRED_RELEASE_BATCH`` shoppers)."""
    # Payments builds on the waiting room (purchase needs admission); reach back only at call time.
    from payments import services as payment_services

    if Drop.objects.filter(pk=drop_id).exists():
        payment_services.authorizations_cancel_for_shoppers(drop_id=drop_id, shopper_ids=shopper_ids)


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def admission_expired_release(drop_id: int, shopper_id: int) -> None:
    """One shopper's release, as ticks before ``admissions_expired_release`` queued it (kept for those);
    handed on as a task of the batch kind, so it gets that task's retries."""
    admissions_expired_release.delay(drop_id, [shopper_id])


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def queue_save_all() -> dict[str, int]:
    """Save queue entries in batches and rebuild drops whose Redis keys were lost (beat, every second)."""
    return persistence.queue_save_all()
