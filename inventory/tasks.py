"""Celery entry points of the inventory."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def holds_sweep_all() -> dict[int, int]:
    """Return expired holds of every armed drop to stock (beat, every few seconds; idempotent)."""
    return services.drop_expire_holds_due()
